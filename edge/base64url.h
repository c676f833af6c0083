#ifndef CHAT_EDGE_BASE64URL_H_
#define CHAT_EDGE_BASE64URL_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace chat::edge {

// base64url without padding, as JWS and JWK use it (RFC 7515 §2). Decoding is
// strict: no padding, no whitespace, no non-zero trailing bits, so every
// byte string has exactly one accepted encoding.
absl::StatusOr<std::string> Base64UrlDecode(std::string_view text);
std::string Base64UrlEncode(std::string_view bytes);

}  // namespace chat::edge

#endif  // CHAT_EDGE_BASE64URL_H_
