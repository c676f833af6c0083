#ifndef CHAT_EDGE_JWT_IDENTITIES_H_
#define CHAT_EDGE_JWT_IDENTITIES_H_

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "edge/backends.h"
#include "edge/profile_resolver.h"

namespace chat::edge {

// Who a jwt-mode handshake speaks for: the verified token's user, or — when
// the client asks for another name (`?name=`) and profiles are configured —
// the `name` in the user's profile at the identity provider, once the token's
// subject has claimed that name. Errors, and the HTTP answer for each
// (HttpStatusForRefusal):
// - Unauthenticated: bad token, or the provider refused it: 401.
// - PermissionDenied: ?name= is not the user's, or the name belongs to
//   another subject: 403.
// - ResourceExhausted / Unavailable / other: verification backlog full,
//   provider or name owner unreachable: 503 with Retry-After.
class JwtIdentities {
 public:
  // `profiles` and `claims` go together; both null: ?name= must equal the
  // token's user (no profile lookups, no claims).
  JwtIdentities(TokenVerifier* tokens, ProfileResolver* profiles, NameClaims* claims)
      : tokens_(tokens), profiles_(profiles), claims_(claims) {}

  // `requested_name`: the decoded ?name=, nullopt when absent, "" when it
  // was not a valid user name. `done` may run on any thread.
  void Resolve(std::string token, std::optional<std::string> requested_name,
               std::function<void(absl::StatusOr<Identity>)> done);

  bool resolves_profiles() const { return profiles_ != nullptr; }

 private:
  void Bind(Identity identity, std::function<void(absl::StatusOr<Identity>)> done);

  TokenVerifier* const tokens_;
  ProfileResolver* const profiles_;
  NameClaims* const claims_;
};

// 401, 403 or 503 (see JwtIdentities).
int HttpStatusForRefusal(const absl::Status& status);

}  // namespace chat::edge

#endif  // CHAT_EDGE_JWT_IDENTITIES_H_
