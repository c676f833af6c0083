#ifndef CHAT_EDGE_PROFILE_RESOLVER_H_
#define CHAT_EDGE_PROFILE_RESOLVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "edge/work_queue.h"

// The user's profile at the identity provider, asked with the user's own
// token: how the edge learns the display name of an account whose token only
// carries an opaque id (a Cognito pool keyed by e-mail puts a UUID in the
// access token's `username`; the name the app shows is the `name` attribute).
namespace chat::edge {

struct ProfileConfig {
  enum class Kind {
    // Cognito's GetUser: POST {"AccessToken":...} to the user pool's endpoint
    // (https://cognito-idp.<region>.amazonaws.com/) with
    // X-Amz-Target: AWSCognitoIdentityProviderService.GetUser.
    kCognito,
    // OpenID Connect userinfo: GET with Authorization: Bearer.
    kUserinfo,
  };
  Kind kind = Kind::kCognito;
  std::string url;
  // The attribute (Cognito) or claim (userinfo) holding the name.
  std::string name_attribute = "name";
  absl::Duration timeout = absl::Seconds(5);
  int threads = 2;
  size_t max_queued = 256;
  size_t max_cached = 10000;
};

// Errors a profile lookup answers with, and what a handshake makes of them:
// - Unauthenticated: the provider refused the token (revoked, user gone): 401.
// - PermissionDenied: the profile has no usable name: 403.
// - Unavailable / ResourceExhausted: the provider is down, slow or answered
//   something we do not understand, or too many lookups wait: 503 with
//   Retry-After. Never a guessed name.

// Parses a Cognito GetUser reply: the `name_attribute` of UserAttributes, and
// the `sub` attribute, which must equal `subject` when both are known.
absl::StatusOr<std::string> NameFromGetUser(std::string_view json, long http_status,
                                            const std::string& name_attribute,
                                            const std::string& subject);
// Parses an OIDC userinfo reply: its `sub` must equal `subject` (OIDC Core
// §5.3.2), the name is the `name_attribute` claim.
absl::StatusOr<std::string> NameFromUserinfo(std::string_view json, long http_status,
                                             const std::string& name_attribute,
                                             const std::string& subject);

// One lookup, blocking: (token, subject) -> name.
using ProfileFetcher = std::function<absl::StatusOr<std::string>(const std::string& token,
                                                                 const std::string& subject)>;
// The libcurl fetcher for `config`.
ProfileFetcher MakeHttpProfileFetcher(const ProfileConfig& config);

// Resolves names on a bounded WorkQueue (never on the caller's thread) and
// remembers each token's answer until the token expires, so a client that
// reconnects with the same token costs the provider nothing. Concurrent
// lookups of one token share a single call. Only names are cached, never
// failures. Thread-safe.
class ProfileResolver {
 public:
  ProfileResolver(ProfileFetcher fetcher, const Clock* clock, int threads, size_t max_queued,
                  size_t max_cached);

  // `done` runs once, on a worker thread or (cache hit, queue full) before
  // Resolve returns. `expires_at_s` is the token's exp (0: none; then the
  // name is kept for at most kNoExpCacheMs).
  void Resolve(const std::string& token, const std::string& subject, int64_t expires_at_s,
               std::function<void(absl::StatusOr<std::string>)> done);

  int64_t fetches() const;  // calls to the provider so far

  static constexpr int64_t kNoExpCacheMs = 5 * 60 * 1000;

 private:
  using Done = std::function<void(absl::StatusOr<std::string>)>;
  struct Entry {
    bool resolved = false;
    std::string name;
    int64_t until_ms = 0;
    std::vector<Done> waiters;  // while !resolved
  };
  void Finish(const std::string& key, int64_t until_ms, absl::StatusOr<std::string> name);
  void MakeRoom() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ProfileFetcher fetcher_;
  const Clock* const clock_;
  const size_t max_cached_;
  mutable absl::Mutex mu_;
  // Keyed by SHA-256 of the token: 32 bytes instead of kilobytes, and no
  // second copy of every bearer token in memory.
  absl::flat_hash_map<std::string, Entry> cache_ ABSL_GUARDED_BY(mu_);
  int64_t fetches_ ABSL_GUARDED_BY(mu_) = 0;
  WorkQueue queue_;  // last: joined before the rest goes
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_PROFILE_RESOLVER_H_
