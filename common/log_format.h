#ifndef CHAT_COMMON_LOG_FORMAT_H_
#define CHAT_COMMON_LOG_FORMAT_H_

#include <time.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"
#include "spdlog/formatter.h"
#include "spdlog/spdlog.h"

namespace chat {

// How log lines look on stderr: spdlog's text, or one JSON object per line
// for log pipelines. A flag type (--log_format=text|json).
enum class LogFormat { kText, kJson };

inline bool AbslParseFlag(absl::string_view text, LogFormat* format, std::string* error) {
  if (text == "text") {
    *format = LogFormat::kText;
    return true;
  }
  if (text == "json") {
    *format = LogFormat::kJson;
    return true;
  }
  *error = "must be 'text' or 'json'";
  return false;
}

inline std::string AbslUnparseFlag(LogFormat format) {
  return format == LogFormat::kJson ? "json" : "text";
}

// Appends `text` as a JSON string literal (quotes included). Control
// characters, quotes and backslashes are escaped; bytes that are not
// well-formed UTF-8 become U+FFFD, so every line stays valid JSON whatever a
// message quotes (peer input, file names). `Buffer` has append(begin, end).
template <class Buffer>
void AppendJsonString(std::string_view text, Buffer& out) {
  auto put = [&out](std::string_view s) { out.append(s.data(), s.data() + s.size()); };
  auto cont = [&text](size_t i) {
    return i < text.size() && (static_cast<uint8_t>(text[i]) & 0xC0) == 0x80;
  };
  put("\"");
  size_t i = 0;
  while (i < text.size()) {
    const uint8_t c = static_cast<uint8_t>(text[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
          put("\\\"");
          break;
        case '\\':
          put("\\\\");
          break;
        case '\n':
          put("\\n");
          break;
        case '\r':
          put("\\r");
          break;
        case '\t':
          put("\\t");
          break;
        default:
          if (c < 0x20) {
            static constexpr char kHex[] = "0123456789abcdef";
            const char esc[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
            put(std::string_view(esc, sizeof(esc)));
          } else {
            put(text.substr(i, 1));
          }
      }
      ++i;
      continue;
    }
    // The length of a well-formed sequence starting here, or 0 (RFC 3629:
    // no overlongs, no surrogates, nothing above U+10FFFF).
    size_t n = 0;
    const uint8_t c1 = i + 1 < text.size() ? static_cast<uint8_t>(text[i + 1]) : 0;
    if (c >= 0xC2 && c <= 0xDF) {
      n = cont(i + 1) ? 2 : 0;
    } else if (c >= 0xE0 && c <= 0xEF) {
      const bool second_ok = c == 0xE0   ? (c1 >= 0xA0 && c1 <= 0xBF)
                             : c == 0xED ? (c1 >= 0x80 && c1 <= 0x9F)
                                         : cont(i + 1);
      n = second_ok && cont(i + 2) ? 3 : 0;
    } else if (c >= 0xF0 && c <= 0xF4) {
      const bool second_ok = c == 0xF0   ? (c1 >= 0x90 && c1 <= 0xBF)
                             : c == 0xF4 ? (c1 >= 0x80 && c1 <= 0x8F)
                                         : cont(i + 1);
      n = second_ok && cont(i + 2) && cont(i + 3) ? 4 : 0;
    }
    if (n == 0) {
      put("\xEF\xBF\xBD");  // U+FFFD
      ++i;
    } else {
      put(text.substr(i, n));
      i += n;
    }
  }
  put("\"");
}

// {"ts":"2026-12-01T15:13:07.921Z","level":"info","service":"edge","msg":"..."}
// ts in UTC with milliseconds; level as spdlog names it (trace, debug, info,
// warning, error, critical); service is the logger's name.
class JsonLogFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    auto put = [&dest](std::string_view s) { dest.append(s.data(), s.data() + s.size()); };
    const auto since_epoch = msg.time.time_since_epoch();
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    const auto millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - secs).count();
    const time_t t = static_cast<time_t>(secs.count());
    struct tm utc;
    gmtime_r(&t, &utc);
    char ts[40];
    const size_t n = std::strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &utc);
    put("{\"ts\":\"");
    put(std::string_view(ts, n));
    const char frac[] = {'.',
                         static_cast<char>('0' + millis / 100),
                         static_cast<char>('0' + millis / 10 % 10),
                         static_cast<char>('0' + millis % 10),
                         'Z',
                         '"'};
    put(std::string_view(frac, sizeof(frac)));
    put(",\"level\":");
    const auto level = spdlog::level::to_string_view(msg.level);
    AppendJsonString(std::string_view(level.data(), level.size()), dest);
    put(",\"service\":");
    AppendJsonString(std::string_view(msg.logger_name.data(), msg.logger_name.size()), dest);
    put(",\"msg\":");
    AppendJsonString(std::string_view(msg.payload.data(), msg.payload.size()), dest);
    put("}\n");
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonLogFormatter>();
  }
};

}  // namespace chat

#endif  // CHAT_COMMON_LOG_FORMAT_H_
