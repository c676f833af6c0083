#include "common/names.h"

#include <cstdint>

namespace chat {

bool IsValidUtf8(std::string_view text) {
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    const auto c = static_cast<uint8_t>(text[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (int k = 1; k < len; ++k) {
      const auto cc = static_cast<uint8_t>(text[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

absl::Status ValidateUserName(std::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("name is empty");
  if (name.size() > kMaxUserNameBytes) {
    return absl::InvalidArgumentError("name is longer than 64 bytes");
  }
  if (!IsValidUtf8(name)) return absl::InvalidArgumentError("name is not valid UTF-8");
  for (char ch : name) {
    const auto c = static_cast<uint8_t>(ch);
    if (c < 0x20 || c == 0x7F) {
      return absl::InvalidArgumentError("name contains a control character");
    }
  }
  // C1 controls (U+0080..U+009F) are encoded as C2 80..C2 9F.
  for (size_t i = 0; i + 1 < name.size(); ++i) {
    if (static_cast<uint8_t>(name[i]) == 0xC2 && static_cast<uint8_t>(name[i + 1]) >= 0x80 &&
        static_cast<uint8_t>(name[i + 1]) <= 0x9F) {
      return absl::InvalidArgumentError("name contains a control character");
    }
  }
  if (name.front() == ' ' || name.back() == ' ') {
    return absl::InvalidArgumentError("name has leading or trailing spaces");
  }
  return absl::OkStatus();
}

}  // namespace chat
