#include "edge/jwt_verifier.h"

#include <jwt.h>
#include <openssl/err.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "boost/json/parse.hpp"
#include "boost/json/value.hpp"
#include "common/names.h"
#include "edge/base64url.h"

namespace chat::edge {
namespace json = boost::json;
namespace {

constexpr size_t kMinHs256SecretBytes = 32;
constexpr int64_t kMaxClockSkewS = 3600;

absl::Status Unauthenticated(absl::string_view reason) {
  return absl::UnauthenticatedError(reason);
}

// Token-supplied text in a message: bounded and printable.
std::string Quote(std::string_view untrusted) {
  constexpr size_t kMax = 64;
  std::string shown =
      absl::CHexEscape(absl::string_view(untrusted.data(), std::min(untrusted.size(), kMax)));
  return absl::StrCat("'", shown, untrusted.size() > kMax ? "...'" : "'");
}

absl::StatusOr<json::object> DecodeJsonObject(std::string_view b64, const char* what) {
  auto bytes = Base64UrlDecode(b64);
  if (!bytes.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", bytes.status().message()));
  }
  boost::system::error_code ec;
  json::value value = json::parse(json::string_view(bytes->data(), bytes->size()), ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat(what, " is not valid JSON"));
  if (!value.is_object())
    return absl::InvalidArgumentError(absl::StrCat(what, " is not an object"));
  return std::move(value.get_object());
}

// A NumericDate (RFC 7519 §2): seconds, possibly fractional; clamped to int64.
absl::StatusOr<std::optional<int64_t>> NumericDate(const json::object& payload, const char* name) {
  const json::value* v = payload.if_contains(name);
  if (v == nullptr) return std::optional<int64_t>();
  if (v->is_int64()) return std::optional<int64_t>(v->get_int64());
  if (v->is_uint64()) return std::optional<int64_t>(std::numeric_limits<int64_t>::max());
  if (v->is_double() && std::isfinite(v->get_double())) {
    const double d = std::floor(v->get_double());
    if (d >= 9.2e18) return std::optional<int64_t>(std::numeric_limits<int64_t>::max());
    if (d <= -9.2e18) return std::optional<int64_t>(std::numeric_limits<int64_t>::min());
    return std::optional<int64_t>(static_cast<int64_t>(d));
  }
  return Unauthenticated(absl::StrCat("token claim '", name, "' must be a number"));
}

absl::Status RequireString(const json::object& payload, const char* name,
                           const std::string& expected) {
  const json::value* v = payload.if_contains(name);
  if (v == nullptr || !v->is_string()) {
    return Unauthenticated(absl::StrCat("token has no string '", name, "' claim"));
  }
  if (v->get_string() != expected) {
    return Unauthenticated(
        absl::StrCat("token '", name, "' is ", Quote(v->get_string()), ", not '", expected, "'"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<JwtParts> ParseJwtUnverified(std::string_view token) {
  if (token.size() > kMaxJwtBytes) {
    return absl::InvalidArgumentError(absl::StrCat("token longer than ", kMaxJwtBytes, " bytes"));
  }
  const size_t dot1 = token.find('.');
  const size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return absl::InvalidArgumentError("token must have three dot-separated parts");
  }
  JwtParts parts;
  auto header = DecodeJsonObject(token.substr(0, dot1), "token header");
  if (!header.ok()) return header.status();
  parts.header = *std::move(header);
  auto payload = DecodeJsonObject(token.substr(dot1 + 1, dot2 - dot1 - 1), "token payload");
  if (!payload.ok()) return payload.status();
  parts.payload = *std::move(payload);
  auto signature = Base64UrlDecode(token.substr(dot2 + 1));
  if (!signature.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("token signature: ", signature.status().message()));
  }
  parts.signature = *std::move(signature);

  const json::value* alg = parts.header.if_contains("alg");
  if (alg == nullptr || !alg->is_string()) {
    return absl::InvalidArgumentError("token header has no string 'alg'");
  }
  parts.alg = std::string(alg->get_string());
  // RFC 7515 §4.1.11: extensions we do not understand must be refused.
  if (parts.header.contains("crit")) {
    return absl::InvalidArgumentError("token header has 'crit' extensions");
  }
  if (const json::value* kid = parts.header.if_contains("kid"); kid != nullptr) {
    if (!kid->is_string()) return absl::InvalidArgumentError("token header 'kid' is not a string");
    parts.kid = std::string(kid->get_string());
  }
  return parts;
}

absl::StatusOr<std::unique_ptr<JwtVerifier>> JwtVerifier::Create(JwtConfig config,
                                                                 const Clock* clock) {
  if (!config.jwks_file.empty() && !config.jwks_url.empty()) {
    return absl::InvalidArgumentError("set at most one of the JWKS file and the JWKS URL");
  }
  std::unique_ptr<KeySource> keys;
  if (!config.jwks_file.empty()) {
    auto source = StaticKeySource::FromFile(config.jwks_file);
    if (!source.ok()) return source.status();
    keys = *std::move(source);
  } else if (!config.jwks_url.empty()) {
    if (clock == nullptr) return absl::InvalidArgumentError("JwtVerifier needs a clock");
    auto source = RefreshingKeySource::Create(
        MakeUrlFetcher(config.jwks_url, config.jwks_fetch_timeout), config.jwks_refresh, clock);
    if (!source.ok()) {
      return absl::Status(source.status().code(),
                          absl::StrCat("JWKS URL: ", source.status().message()));
    }
    keys = *std::move(source);
  }
  return Create(std::move(config), std::move(keys), clock);
}

absl::StatusOr<std::unique_ptr<JwtVerifier>> JwtVerifier::Create(JwtConfig config,
                                                                 std::unique_ptr<KeySource> keys,
                                                                 const Clock* clock) {
  if (clock == nullptr) return absl::InvalidArgumentError("JwtVerifier needs a clock");
  if (!config.hs256_secret.empty() && config.hs256_secret.size() < kMinHs256SecretBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the HS256 secret must be at least ", kMinHs256SecretBytes, " bytes"));
  }
  if (config.hs256_secret.empty() && keys == nullptr) {
    return absl::InvalidArgumentError("JWT mode needs an HS256 secret or a JWKS file or URL");
  }
  if (config.user_claim.empty()) return absl::InvalidArgumentError("empty user claim name");
  if (config.clock_skew_s < 0 || config.clock_skew_s > kMaxClockSkewS) {
    return absl::InvalidArgumentError(
        absl::StrCat("clock skew must be within 0..", kMaxClockSkewS, " s"));
  }
  return std::unique_ptr<JwtVerifier>(new JwtVerifier(std::move(config), std::move(keys), clock));
}

absl::StatusOr<std::string> JwtVerifier::FindKey(const JwtParts& parts) const {
  if (keys_ == nullptr) {
    return Unauthenticated(absl::StrCat(parts.alg, " tokens are not accepted (no JWKS)"));
  }
  // nullptr with `status` OK: the kid is not in the set.
  auto pick = [&](const JwkSet& set, absl::Status* status) -> const Jwk* {
    if (parts.kid.has_value()) {
      bool kid_seen = false;
      for (const Jwk& key : set) {
        if (key.kid != *parts.kid) continue;
        if (key.alg == parts.alg) return &key;
        kid_seen = true;
      }
      if (kid_seen) {
        *status = Unauthenticated(
            absl::StrCat("key ", Quote(*parts.kid), " is not an ", parts.alg, " key"));
      }
      return nullptr;
    }
    const Jwk* found = nullptr;
    int count = 0;
    for (const Jwk& key : set) {
      if (key.alg != parts.alg) continue;
      found = &key;
      ++count;
    }
    if (count != 1) {
      *status = Unauthenticated(
          absl::StrCat("token has no 'kid' and the key set has ", count, " ", parts.alg, " keys"));
      return nullptr;
    }
    return found;
  };
  absl::Status status;
  std::shared_ptr<const JwkSet> set = keys_->Keys();
  const Jwk* key = pick(*set, &status);
  if (key == nullptr && status.ok()) {
    set = keys_->RefreshForUnknownKid();
    key = pick(*set, &status);
  }
  if (!status.ok()) return status;
  if (key == nullptr) return Unauthenticated(absl::StrCat("unknown key id ", Quote(*parts.kid)));
  return key->pem;
}

absl::Status JwtVerifier::CheckClaims(const json::object& payload, VerifiedToken* out) const {
  const int64_t now_s = clock_->NowMs() / 1000;
  const int64_t skew = config_.clock_skew_s;
  auto exp = NumericDate(payload, "exp");
  if (!exp.ok()) return exp.status();
  if (exp->has_value()) {
    if (**exp <= now_s - skew) return Unauthenticated("token expired");
    out->expires_at_s = **exp;
  } else if (config_.require_exp) {
    return Unauthenticated("token has no 'exp' claim");
  }
  auto nbf = NumericDate(payload, "nbf");
  if (!nbf.ok()) return nbf.status();
  if (nbf->has_value() && **nbf > now_s + skew) return Unauthenticated("token not valid yet");

  if (!config_.issuer.empty()) {
    if (absl::Status s = RequireString(payload, "iss", config_.issuer); !s.ok()) return s;
  }
  if (!config_.audience.empty()) {
    const json::value* aud = payload.if_contains("aud");
    bool match = false;
    if (aud != nullptr && aud->is_string()) {
      match = aud->get_string() == config_.audience;
    } else if (aud != nullptr && aud->is_array()) {
      for (const json::value& a : aud->get_array()) {
        if (a.is_string() && a.get_string() == config_.audience) match = true;
      }
    }
    if (!match)
      return Unauthenticated(absl::StrCat("token audience is not '", config_.audience, "'"));
  }
  if (!config_.client_id.empty()) {
    if (absl::Status s = RequireString(payload, "client_id", config_.client_id); !s.ok()) return s;
  }

  const json::value* user = payload.if_contains(config_.user_claim);
  if (user == nullptr || !user->is_string()) {
    return Unauthenticated(absl::StrCat("token has no string '", config_.user_claim, "' claim"));
  }
  const std::string_view name(user->get_string());
  if (absl::Status s = ValidateUserName(name); !s.ok()) {
    return Unauthenticated(
        absl::StrCat("token '", config_.user_claim, "' is not a valid user name: ", s.message()));
  }
  out->user = std::string(name);
  if (const json::value* sub = payload.if_contains("sub"); sub != nullptr && sub->is_string()) {
    out->subject = std::string(sub->get_string());
  }
  return absl::OkStatus();
}

absl::StatusOr<VerifiedToken> JwtVerifier::Verify(std::string_view token) const {
  auto parts = ParseJwtUnverified(token);
  if (!parts.ok())
    return Unauthenticated(absl::StrCat("malformed token: ", parts.status().message()));

  // Only configured algorithms, each with its own kind of key: an HS256 token
  // is never checked against a JWKS public key used as an HMAC secret.
  jwt_alg_t expected;
  std::string key;
  if (parts->alg == "HS256") {
    if (config_.hs256_secret.empty()) return Unauthenticated("HS256 tokens are not accepted");
    expected = JWT_ALG_HS256;
    key = config_.hs256_secret;
  } else if (parts->alg == "RS256" || parts->alg == "ES256") {
    expected = parts->alg == "RS256" ? JWT_ALG_RS256 : JWT_ALG_ES256;
    auto pem = FindKey(*parts);
    if (!pem.ok()) return pem.status();
    key = *std::move(pem);
  } else {
    return Unauthenticated(absl::StrCat("token algorithm ", Quote(parts->alg), " is not accepted"));
  }
  if (parts->signature.empty()) return Unauthenticated("token has no signature");

  const std::string terminated(token);  // libjwt wants a C string
  jwt_t* raw = nullptr;
  const int rc =
      jwt_decode(&raw, terminated.c_str(), reinterpret_cast<const unsigned char*>(key.data()),
                 static_cast<int>(key.size()));
  std::unique_ptr<jwt_t, decltype(&jwt_free)> decoded(raw, &jwt_free);
  if (rc != 0 || decoded == nullptr) {
    ERR_clear_error();  // libjwt leaves OpenSSL's per-thread queue dirty
    // libjwt does not say whether the signature or its own parse failed.
    return Unauthenticated("token signature is not valid");
  }
  // libjwt reads the header with its own JSON parser; if it saw a different
  // alg (duplicate keys), the check above was about another token.
  if (jwt_get_alg(decoded.get()) != expected) {
    return Unauthenticated("token algorithm is ambiguous");
  }

  VerifiedToken verified;
  if (absl::Status s = CheckClaims(parts->payload, &verified); !s.ok()) return s;
  return verified;
}

}  // namespace chat::edge
