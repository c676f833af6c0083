#ifndef CHAT_EDGE_NAME_DECODE_H_
#define CHAT_EDGE_NAME_DECODE_H_

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace chat::edge {

// Decodes an application/x-www-form-urlencoded value: %XX escapes and '+' as
// space. A '%' not followed by two hex digits is an error.
absl::StatusOr<std::string> DecodeFormValue(std::string_view raw);

// The raw (still encoded) value of `key` in the query of a request-target
// ("/path?a=1&name=bob"), or nullopt when absent. The first occurrence wins.
std::optional<std::string_view> FindQueryParam(std::string_view target, std::string_view key);

// The user named by `?name=` in a request-target: decoded and validated.
// Errors carry a one-line reason suitable for an HTTP 400 body.
absl::StatusOr<std::string> UserFromTarget(std::string_view target);

}  // namespace chat::edge

#endif  // CHAT_EDGE_NAME_DECODE_H_
