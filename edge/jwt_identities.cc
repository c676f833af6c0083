#include "edge/jwt_identities.h"

#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace chat::edge {

int HttpStatusForRefusal(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    default:
      return 503;
  }
}

void JwtIdentities::Resolve(std::string token, std::optional<std::string> requested_name,
                            std::function<void(absl::StatusOr<Identity>)> done) {
  // The token outlives the verifier's copy: a profile lookup needs it again.
  auto kept = std::make_shared<std::string>(token);
  tokens_->Verify(std::move(token), [this, kept, requested = std::move(requested_name),
                                     done = std::move(done)](
                                        absl::StatusOr<Identity> identity) mutable {
    if (!identity.ok()) {
      const absl::Status& s = identity.status();
      done(s.code() == absl::StatusCode::kUnauthenticated
               ? absl::UnauthenticatedError(absl::StrCat("invalid token: ", s.message()))
               : s);
      return;
    }
    if (requested.has_value() && requested->empty()) {
      done(absl::PermissionDeniedError("?name= is not a valid user name"));
      return;
    }
    if (!requested.has_value() || *requested == identity->user) {
      Bind(*std::move(identity), std::move(done));
      return;
    }
    if (profiles_ == nullptr) {
      done(absl::PermissionDeniedError("?name= does not match the token's user"));
      return;
    }
    if (identity->subject.empty()) {
      done(absl::UnauthenticatedError("the token has no 'sub' to own a name with"));
      return;
    }
    const std::string subject = identity->subject;
    const int64_t expires_at_s = identity->expires_at_s;
    profiles_->Resolve(
        *kept, subject, expires_at_s,
        [this, identity = *std::move(identity), requested = *std::move(requested),
         done = std::move(done)](absl::StatusOr<std::string> name) mutable {
          if (!name.ok()) {
            done(name.status());
            return;
          }
          if (*name != requested) {
            done(absl::PermissionDeniedError(absl::StrCat(
                "?name= is neither the token's user nor the name in its profile ('", *name, "')")));
            return;
          }
          identity.user = *std::move(name);
          Bind(std::move(identity), std::move(done));
        });
  });
}

void JwtIdentities::Bind(Identity identity, std::function<void(absl::StatusOr<Identity>)> done) {
  if (claims_ == nullptr) {
    done(std::move(identity));
    return;
  }
  // With profiles on, every name a connection speaks as is claimed, whether
  // it came from the token or the profile: otherwise the user "alice" of the
  // token and a profile renamed "alice" could both speak as alice.
  if (identity.subject.empty()) {
    done(absl::UnauthenticatedError("the token has no 'sub' to own a name with"));
    return;
  }
  const std::string name = identity.user;
  const std::string subject = identity.subject;
  claims_->Claim(
      name, subject,
      [identity = std::move(identity),
       done = std::move(done)](absl::StatusOr<bool> granted) mutable {
        if (!granted.ok()) {
          done(absl::UnavailableError(
              absl::StrCat("cannot check who owns the name: ", granted.status().message())));
          return;
        }
        if (!*granted) {
          done(absl::PermissionDeniedError(absl::StrCat(
              "the name '", identity.user, "' belongs to another account; choose another name")));
          return;
        }
        done(std::move(identity));
      });
}

}  // namespace chat::edge
