#ifndef CHAT_COMMON_NAMES_H_
#define CHAT_COMMON_NAMES_H_

#include <string_view>

#include "absl/status/status.h"

namespace chat {

inline constexpr size_t kMaxUserNameBytes = 64;

// A user name: 1-64 bytes of valid UTF-8, no control characters, no leading or
// trailing spaces. Shared by the edge (handshake) and the services (requests
// from other backends).
absl::Status ValidateUserName(std::string_view name);

// True when `text` is well-formed UTF-8 (no overlongs, no surrogates).
bool IsValidUtf8(std::string_view text);

}  // namespace chat

#endif  // CHAT_COMMON_NAMES_H_
