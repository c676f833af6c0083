#ifndef CHAT_EDGE_JWKS_H_
#define CHAT_EDGE_JWKS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

// JSON Web Key Sets (RFC 7517) for verifying RS256/ES256 tokens: parsing, and
// the sources a verifier gets its current key set from.
namespace chat::edge {

inline constexpr size_t kMaxJwksBytes = 1 << 20;
inline constexpr size_t kMaxJwksKeys = 100;

// One verification key. `alg` is what the key may verify: "RS256" for RSA
// keys, "ES256" for EC P-256 keys.
struct Jwk {
  std::string kid;  // empty when the JWK has none
  std::string alg;
  std::string pem;  // SubjectPublicKeyInfo PEM, the form libjwt reads
};
using JwkSet = std::vector<Jwk>;

// Parses a JWKS document ({"keys":[...]}). Keys this verifier cannot use are
// skipped: other kty/crv, "use" other than "sig", "alg" other than RS256 /
// ES256, RSA moduli outside 2048..8192 bits. A key of a usable type that is
// malformed (bad base64url, point not on the curve, ...) fails the whole set,
// so a broken IdP configuration is noticed rather than half-served.
absl::StatusOr<JwkSet> ParseJwks(std::string_view json);

// Where a verifier gets keys; an interface so tests can supply them directly.
class KeySource {
 public:
  virtual ~KeySource() = default;
  // The current key set; never null. Thread-safe.
  virtual std::shared_ptr<const JwkSet> Keys() const = 0;
  // Called when a token names a kid the current set lacks. A source that can
  // refetch may do so (rate-limited) and may block for up to its fetch
  // timeout, but never waits for a fetch another thread is doing; returns the
  // set to retry with. Thread-safe.
  virtual std::shared_ptr<const JwkSet> RefreshForUnknownKid() { return Keys(); }
};

// A fixed key set (tests, and JWKS files).
class StaticKeySource : public KeySource {
 public:
  explicit StaticKeySource(JwkSet keys) : keys_(std::make_shared<const JwkSet>(std::move(keys))) {}
  static absl::StatusOr<std::unique_ptr<StaticKeySource>> FromFile(const std::string& path);
  std::shared_ptr<const JwkSet> Keys() const override { return keys_; }

 private:
  std::shared_ptr<const JwkSet> keys_;
};

// Returns a JWKS document (the body of a GET), or an error.
using JwksFetcher = std::function<absl::StatusOr<std::string>()>;

// GET over HTTP(S) with libcurl: TLS verified, at most 3 redirects, only
// http/https, body capped at `max_bytes`, non-2xx is an error.
absl::StatusOr<std::string> FetchUrl(const std::string& url, absl::Duration timeout,
                                     size_t max_bytes = kMaxJwksBytes);
JwksFetcher MakeUrlFetcher(std::string url, absl::Duration timeout);

struct RefreshOptions {
  // Background refetch period; zero disables the background thread.
  absl::Duration refresh_interval = absl::Minutes(10);
  // Refetches on an unknown kid happen at most this often, so tokens with
  // made-up kids cannot make us hammer the IdP.
  absl::Duration min_refetch_interval = absl::Minutes(1);
};

// Keys fetched by `fetcher`: once at Create (which fails if that fails), then
// every refresh_interval on a background thread and on unknown kids. A failed
// refetch keeps serving the last good set.
class RefreshingKeySource : public KeySource {
 public:
  static absl::StatusOr<std::unique_ptr<RefreshingKeySource>> Create(JwksFetcher fetcher,
                                                                     RefreshOptions options,
                                                                     const Clock* clock);
  ~RefreshingKeySource() override;  // stops and joins the background thread

  std::shared_ptr<const JwkSet> Keys() const override;
  std::shared_ptr<const JwkSet> RefreshForUnknownKid() override;

  // Fetch attempts so far, successful or not (for tests and metrics).
  int64_t fetch_count() const;
  // The error of the most recent fetch, OK when it succeeded.
  absl::Status last_fetch_status() const;

 private:
  RefreshingKeySource(JwksFetcher fetcher, RefreshOptions options, const Clock* clock);
  // Fetches and, on success, swaps the key set in. Serialized by fetch_mu_.
  absl::Status FetchNow() ABSL_EXCLUSIVE_LOCKS_REQUIRED(fetch_mu_);
  void RefreshLoop();

  const JwksFetcher fetcher_;
  const RefreshOptions options_;
  const Clock* const clock_;

  absl::Mutex fetch_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  int64_t last_fetch_ms_ ABSL_GUARDED_BY(fetch_mu_) = 0;

  mutable absl::Mutex mu_;
  std::shared_ptr<const JwkSet> keys_ ABSL_GUARDED_BY(mu_);
  int64_t fetch_count_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status last_fetch_status_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread refresher_;
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_JWKS_H_
