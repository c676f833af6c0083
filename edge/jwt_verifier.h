#ifndef CHAT_EDGE_JWT_VERIFIER_H_
#define CHAT_EDGE_JWT_VERIFIER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "boost/json/object.hpp"
#include "common/clock.h"
#include "edge/jwks.h"

// Verifies the JWTs of docs/protocol.md §1 `jwt` mode. Signatures are checked by
// libjwt (OpenSSL); this code only decides which algorithm and key a token may
// use and checks the claims.
namespace chat::edge {

inline constexpr size_t kMaxJwtBytes = 8 * 1024;

struct JwtConfig {
  // HS256 is accepted only when this is set; at least 32 bytes (RFC 7518 §3.2).
  std::string hs256_secret;
  // RS256/ES256 keys, from at most one of these (both empty: no RS/ES tokens).
  std::string jwks_file;
  std::string jwks_url;
  absl::Duration jwks_fetch_timeout = absl::Seconds(5);
  RefreshOptions jwks_refresh;
  // Checked when non-empty. `audience` matches a string `aud` or any element
  // of an array `aud`. Cognito access tokens have no `aud`: leave it empty and
  // set `client_id`, checked against the `client_id` claim.
  std::string issuer;
  std::string audience;
  std::string client_id;
  // The claim naming the user: "sub" by default, "username" for Cognito
  // access tokens. Must pass chat::ValidateUserName.
  std::string user_claim = "sub";
  // Tokens without `exp` never expire; refuse them unless told otherwise.
  bool require_exp = true;
  int64_t clock_skew_s = 30;
};

struct VerifiedToken {
  std::string user;
  int64_t expires_at_s = 0;  // 0: the token has no `exp`
  // The `sub` claim when it is a string (the identity provider's stable id
  // for the account), else empty.
  std::string subject;
};

// A token split and decoded, its signature not yet checked: nothing in here
// may be trusted.
struct JwtParts {
  std::string alg;
  std::optional<std::string> kid;
  boost::json::object header;
  boost::json::object payload;
  std::string signature;  // decoded bytes
};

// The "front half" of verification: size limit, three base64url segments,
// header and payload JSON objects, a string `alg`, no `crit`. Errors are
// InvalidArgument with a short reason. Never throws.
absl::StatusOr<JwtParts> ParseJwtUnverified(std::string_view token);

class JwtVerifier {
 public:
  // Loads the JWKS file or fetches the JWKS URL once (failing when that
  // fails; the URL is then refreshed in the background). `clock` must outlive
  // the verifier.
  static absl::StatusOr<std::unique_ptr<JwtVerifier>> Create(JwtConfig config, const Clock* clock);
  // For tests and embedders that manage keys themselves; `keys` may be null.
  static absl::StatusOr<std::unique_ptr<JwtVerifier>> Create(JwtConfig config,
                                                             std::unique_ptr<KeySource> keys,
                                                             const Clock* clock);

  // Unauthenticated with a one-line reason for any token that is not good
  // now. Thread-safe. May block for up to jwks_fetch_timeout when the token
  // names a kid the key set lacks (at most once per min_refetch_interval).
  absl::StatusOr<VerifiedToken> Verify(std::string_view token) const;

  // The key source (null when only HS256 is configured).
  KeySource* key_source() const { return keys_.get(); }

 private:
  JwtVerifier(JwtConfig config, std::unique_ptr<KeySource> keys, const Clock* clock)
      : config_(std::move(config)), keys_(std::move(keys)), clock_(clock) {}

  absl::StatusOr<std::string> FindKey(const JwtParts& parts) const;
  absl::Status CheckClaims(const boost::json::object& payload, VerifiedToken* out) const;

  const JwtConfig config_;
  const std::unique_ptr<KeySource> keys_;
  const Clock* const clock_;
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_JWT_VERIFIER_H_
