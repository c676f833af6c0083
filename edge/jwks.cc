#include "edge/jwks.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "boost/json/parse.hpp"
#include "boost/json/value.hpp"
#include "edge/base64url.h"
#include "edge/http_client.h"

namespace chat::edge {
namespace json = boost::json;
namespace {

struct OpenSslDeleter {
  void operator()(BIGNUM* p) const { BN_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
  void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
  void operator()(OSSL_PARAM_BLD* p) const { OSSL_PARAM_BLD_free(p); }
};
template <typename T>
using OsslPtr = std::unique_ptr<T, OpenSslDeleter>;

absl::Status KeyError(absl::string_view kid, absl::string_view what) {
  // OpenSSL keeps a per-thread error queue; leave it clean for the next user.
  ERR_clear_error();
  return absl::InvalidArgumentError(absl::StrCat("JWKS key '", kid, "': ", what));
}

// Builds a public key from provider parameters, checks it, and exports PEM.
absl::StatusOr<std::string> PublicPem(const char* type, OSSL_PARAM_BLD* bld, absl::string_view kid,
                                      int* bits) {
  OsslPtr<OSSL_PARAM> params(OSSL_PARAM_BLD_to_param(bld));
  OsslPtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  if (params == nullptr || ctx == nullptr || EVP_PKEY_fromdata_init(ctx.get()) <= 0) {
    return KeyError(kid, "OpenSSL setup failed");
  }
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) <= 0) {
    return KeyError(kid, "not a valid public key");
  }
  OsslPtr<EVP_PKEY> pkey(raw);
  OsslPtr<EVP_PKEY_CTX> check(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey.get(), nullptr));
  if (check == nullptr || EVP_PKEY_public_check(check.get()) != 1) {
    return KeyError(kid, "public key check failed");
  }
  *bits = EVP_PKEY_get_bits(pkey.get());
  OsslPtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_PUBKEY(bio.get(), pkey.get()) != 1) {
    return KeyError(kid, "PEM export failed");
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

absl::StatusOr<std::string> B64Member(const json::object& key, const char* name,
                                      absl::string_view kid) {
  const json::value* v = key.if_contains(name);
  if (v == nullptr || !v->is_string()) {
    return KeyError(kid, absl::StrCat("'", name, "' must be a string"));
  }
  auto bytes = Base64UrlDecode(std::string_view(v->get_string()));
  if (!bytes.ok()) return KeyError(kid, absl::StrCat("'", name, "': ", bytes.status().message()));
  return bytes;
}

// nullopt: a key type we skip.
absl::StatusOr<std::optional<std::string>> RsaPem(const json::object& key, absl::string_view kid) {
  auto n = B64Member(key, "n", kid);
  if (!n.ok()) return n.status();
  auto e = B64Member(key, "e", kid);
  if (!e.ok()) return e.status();
  if (n->empty() || e->empty() || e->size() > 8) return KeyError(kid, "bad RSA n or e");
  OsslPtr<BIGNUM> bn_n(BN_bin2bn(reinterpret_cast<const unsigned char*>(n->data()),
                                 static_cast<int>(n->size()), nullptr));
  OsslPtr<BIGNUM> bn_e(BN_bin2bn(reinterpret_cast<const unsigned char*>(e->data()),
                                 static_cast<int>(e->size()), nullptr));
  OsslPtr<OSSL_PARAM_BLD> bld(OSSL_PARAM_BLD_new());
  if (bn_n == nullptr || bn_e == nullptr || bld == nullptr) return KeyError(kid, "out of memory");
  const int n_bits = BN_num_bits(bn_n.get());
  if (n_bits < 2048 || n_bits > 8192) return std::optional<std::string>();
  if (OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1) {
    return KeyError(kid, "OpenSSL setup failed");
  }
  int bits = 0;
  auto pem = PublicPem("RSA", bld.get(), kid, &bits);
  if (!pem.ok()) return pem.status();
  return std::optional<std::string>(*std::move(pem));
}

absl::StatusOr<std::optional<std::string>> EcPem(const json::object& key, absl::string_view kid) {
  const json::value* crv = key.if_contains("crv");
  if (crv == nullptr || !crv->is_string()) return KeyError(kid, "'crv' must be a string");
  if (crv->get_string() != "P-256") return std::optional<std::string>();
  auto x = B64Member(key, "x", kid);
  if (!x.ok()) return x.status();
  auto y = B64Member(key, "y", kid);
  if (!y.ok()) return y.status();
  if (x->size() != 32 || y->size() != 32) return KeyError(kid, "P-256 x and y must be 32 bytes");
  const std::string point = absl::StrCat("\x04", *x, *y);  // uncompressed SEC1 point
  static constexpr char kGroup[] = "prime256v1";
  OsslPtr<OSSL_PARAM_BLD> bld(OSSL_PARAM_BLD_new());
  if (bld == nullptr ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, kGroup, 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) != 1) {
    return KeyError(kid, "OpenSSL setup failed");
  }
  int bits = 0;
  auto pem = PublicPem("EC", bld.get(), kid, &bits);
  if (!pem.ok()) return pem.status();
  return std::optional<std::string>(*std::move(pem));
}

// nullopt: skipped. Error: malformed.
absl::StatusOr<std::optional<Jwk>> ParseKey(const json::value& value, size_t index) {
  const json::object* key = value.if_object();
  if (key == nullptr)
    return absl::InvalidArgumentError(absl::StrCat("JWKS key #", index, " is not an object"));
  Jwk jwk;
  if (const json::value* kid = key->if_contains("kid"); kid != nullptr) {
    if (!kid->is_string())
      return absl::InvalidArgumentError(
          absl::StrCat("JWKS key #", index, ": 'kid' must be a string"));
    jwk.kid = std::string(kid->get_string());
  }
  const std::string name = jwk.kid.empty() ? absl::StrCat("#", index) : jwk.kid;
  const json::value* kty = key->if_contains("kty");
  if (kty == nullptr || !kty->is_string()) return KeyError(name, "'kty' must be a string");
  if (const json::value* use = key->if_contains("use"); use != nullptr) {
    if (!use->is_string()) return KeyError(name, "'use' must be a string");
    if (use->get_string() != "sig") return std::optional<Jwk>();
  }
  std::string declared_alg;
  if (const json::value* alg = key->if_contains("alg"); alg != nullptr) {
    if (!alg->is_string()) return KeyError(name, "'alg' must be a string");
    declared_alg = std::string(alg->get_string());
  }
  absl::StatusOr<std::optional<std::string>> pem;
  if (kty->get_string() == "RSA") {
    jwk.alg = "RS256";
    if (!declared_alg.empty() && declared_alg != jwk.alg) return std::optional<Jwk>();
    pem = RsaPem(*key, name);
  } else if (kty->get_string() == "EC") {
    jwk.alg = "ES256";
    if (!declared_alg.empty() && declared_alg != jwk.alg) return std::optional<Jwk>();
    pem = EcPem(*key, name);
  } else {
    return std::optional<Jwk>();
  }
  if (!pem.ok()) return pem.status();
  if (!pem->has_value()) return std::optional<Jwk>();
  jwk.pem = **std::move(pem);
  return std::optional<Jwk>(std::move(jwk));
}

}  // namespace

absl::StatusOr<JwkSet> ParseJwks(std::string_view text) {
  if (text.size() > kMaxJwksBytes) return absl::InvalidArgumentError("JWKS document too large");
  boost::system::error_code ec;
  const json::value doc = json::parse(json::string_view(text.data(), text.size()), ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("JWKS is not valid JSON: ", ec.message()));
  const json::object* root = doc.if_object();
  const json::value* keys = root == nullptr ? nullptr : root->if_contains("keys");
  if (keys == nullptr || !keys->is_array()) {
    return absl::InvalidArgumentError("JWKS must be an object with a 'keys' array");
  }
  if (keys->get_array().size() > kMaxJwksKeys) {
    return absl::InvalidArgumentError(absl::StrCat("JWKS has more than ", kMaxJwksKeys, " keys"));
  }
  JwkSet set;
  size_t index = 0;
  for (const json::value& value : keys->get_array()) {
    auto key = ParseKey(value, index++);
    if (!key.ok()) return key.status();
    if (key->has_value()) set.push_back(**std::move(key));
  }
  return set;
}

absl::StatusOr<std::unique_ptr<StaticKeySource>> StaticKeySource::FromFile(
    const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open JWKS file '", path, "'"));
  std::string text;
  char buf[8192];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxJwksBytes) {
      return absl::InvalidArgumentError(absl::StrCat("JWKS file '", path, "' is too large"));
    }
  }
  auto keys = ParseJwks(text);
  if (!keys.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", keys.status().message()));
  }
  return std::make_unique<StaticKeySource>(*std::move(keys));
}

absl::StatusOr<std::string> FetchUrl(const std::string& url, absl::Duration timeout,
                                     size_t max_bytes) {
  HttpCall call;
  call.url = url;
  call.timeout = timeout;
  call.max_bytes = max_bytes;
  call.max_redirects = 3;  // key sets move; no credential rides along
  absl::StatusOr<HttpReply> reply = PerformHttp(call);
  if (!reply.ok()) return reply.status();
  if (reply->status < 200 || reply->status > 299) {
    return absl::UnavailableError(absl::StrCat("GET ", url, ": HTTP ", reply->status));
  }
  return std::move(reply->body);
}

JwksFetcher MakeUrlFetcher(std::string url, absl::Duration timeout) {
  return [url = std::move(url), timeout] { return FetchUrl(url, timeout); };
}

RefreshingKeySource::RefreshingKeySource(JwksFetcher fetcher, RefreshOptions options,
                                         const Clock* clock)
    : fetcher_(std::move(fetcher)),
      options_(options),
      clock_(clock),
      keys_(std::make_shared<const JwkSet>()) {}

absl::StatusOr<std::unique_ptr<RefreshingKeySource>> RefreshingKeySource::Create(
    JwksFetcher fetcher, RefreshOptions options, const Clock* clock) {
  std::unique_ptr<RefreshingKeySource> source(
      new RefreshingKeySource(std::move(fetcher), options, clock));
  {
    absl::MutexLock lock(&source->fetch_mu_);
    if (absl::Status s = source->FetchNow(); !s.ok()) return s;
  }
  if (options.refresh_interval > absl::ZeroDuration()) {
    source->refresher_ = std::thread([s = source.get()] { s->RefreshLoop(); });
  }
  return source;
}

RefreshingKeySource::~RefreshingKeySource() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (refresher_.joinable()) refresher_.join();
}

std::shared_ptr<const JwkSet> RefreshingKeySource::Keys() const {
  absl::MutexLock lock(&mu_);
  return keys_;
}

std::shared_ptr<const JwkSet> RefreshingKeySource::RefreshForUnknownKid() {
  // A fetch already under way (a refetch, or the periodic refresh) is not
  // waited for: a flood of made-up kids would otherwise park every
  // verification thread behind a slow identity provider while honest tokens
  // wait in the queue. Such a token is checked against the current set; one
  // naming a key published moments ago may be refused once, and passes when
  // the client retries.
  if (!fetch_mu_.TryLock()) return Keys();
  const int64_t min_ms = absl::ToInt64Milliseconds(options_.min_refetch_interval);
  if (clock_->NowMs() - last_fetch_ms_ >= min_ms) FetchNow().IgnoreError();  // keeps last good
  fetch_mu_.Unlock();
  return Keys();
}

int64_t RefreshingKeySource::fetch_count() const {
  absl::MutexLock lock(&mu_);
  return fetch_count_;
}

absl::Status RefreshingKeySource::last_fetch_status() const {
  absl::MutexLock lock(&mu_);
  return last_fetch_status_;
}

absl::Status RefreshingKeySource::FetchNow() {
  last_fetch_ms_ = clock_->NowMs();
  absl::StatusOr<JwkSet> keys;
  if (absl::StatusOr<std::string> body = fetcher_(); body.ok()) {
    keys = ParseJwks(*body);
  } else {
    keys = body.status();
  }
  absl::MutexLock lock(&mu_);
  ++fetch_count_;
  last_fetch_status_ = keys.status();
  if (keys.ok()) keys_ = std::make_shared<const JwkSet>(*std::move(keys));
  return last_fetch_status_;
}

void RefreshingKeySource::RefreshLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      const absl::Time deadline = absl::Now() + options_.refresh_interval;
      mu_.AwaitWithDeadline(absl::Condition(&stop_), deadline);
      if (stop_) return;
    }
    absl::MutexLock fetch_lock(&fetch_mu_);
    FetchNow().IgnoreError();  // keeps serving the last good set
  }
}

}  // namespace chat::edge
