#ifndef CHAT_EDGE_STATIC_FILES_H_
#define CHAT_EDGE_STATIC_FILES_H_

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace chat::edge {

// A response for the HTTP side of the edge to write out. It carries no transport types; the
// caller adds Content-Length/Server/Date, and drops the body for HEAD.
struct StaticResponse {
  int status = 200;  // 200, 304, 404, 405
  std::string body;  // empty for 304
  std::vector<std::pair<std::string, std::string>> headers;
};

// Serves the web UI's files from one directory. Every request that does not name a regular file
// inside the root (after percent-decoding and resolving symlinks) gets a 404: it never tells a
// traversal attempt from a missing file. Thread-safe: Get keeps no state between calls.
class StaticFiles {
 public:
  // `root` may be empty or missing; then every request is a 404.
  explicit StaticFiles(std::string root);

  // `target` is the raw request-target ("/app.js?v=1"); `if_none_match` the raw If-None-Match
  // header or "" when there is none.
  StaticResponse Get(std::string_view target, std::string_view if_none_match) const;

  // The answer for any method other than GET and HEAD.
  static StaticResponse MethodNotAllowed();

  // The Content-Security-Policy sent with every HTML page.
  static constexpr std::string_view kContentSecurityPolicy =
      "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
      "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

  // Files above this size are not served (the UI's files are a few KiB each).
  static constexpr std::uintmax_t kMaxFileBytes = 8 << 20;

 private:
  std::filesystem::path root_;  // canonical; empty when the root is unusable
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_STATIC_FILES_H_
