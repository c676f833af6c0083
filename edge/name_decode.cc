#include "edge/name_decode.h"

#include "absl/strings/str_cat.h"
#include "common/names.h"

namespace chat::edge {
namespace {
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

absl::StatusOr<std::string> DecodeFormValue(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    const char c = raw[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%') {
      if (i + 2 >= raw.size()) {
        return absl::InvalidArgumentError("truncated %-escape");
      }
      const int hi = HexValue(raw[i + 1]);
      const int lo = HexValue(raw[i + 2]);
      if (hi < 0 || lo < 0) return absl::InvalidArgumentError("invalid %-escape");
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::optional<std::string_view> FindQueryParam(std::string_view target, std::string_view key) {
  const size_t q = target.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view query = target.substr(q + 1);
  if (const size_t hash = query.find('#'); hash != std::string_view::npos) {
    query = query.substr(0, hash);
  }
  while (!query.empty()) {
    const size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const size_t eq = pair.find('=');
    std::string_view k = pair.substr(0, eq);
    if (k == key) {
      return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    }
  }
  return std::nullopt;
}

absl::StatusOr<std::string> UserFromTarget(std::string_view target) {
  std::optional<std::string_view> raw = FindQueryParam(target, "name");
  if (!raw.has_value()) return absl::InvalidArgumentError("missing ?name=<user> in the URL");
  absl::StatusOr<std::string> name = DecodeFormValue(*raw);
  if (!name.ok()) return absl::InvalidArgumentError(absl::StrCat("name: ", name.status().message()));
  if (absl::Status s = ValidateUserName(*name); !s.ok()) {
    return absl::InvalidArgumentError(std::string(s.message()));
  }
  return name;
}

}  // namespace chat::edge
