#include "edge/static_files.h"

#include <cstdint>
#include <fstream>
#include <iterator>
#include <optional>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace chat::edge {
namespace {

namespace fs = std::filesystem;

std::filesystem::path CanonicalRoot(const std::string& root) {
  if (root.empty()) return {};
  std::error_code ec;
  fs::path canonical = fs::canonical(root, ec);
  if (ec || !fs::is_directory(canonical, ec) || ec) return {};
  return canonical;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes the path part of a request-target into segments. Returns nothing for anything that
// is not a plain path below the root: bad escapes, encoded separators, control characters,
// backslashes, '%' left after decoding (double encoding), and segments starting with '.'
// ("..", ".", and dotfiles such as .git). A trailing '/' yields a final empty segment.
std::optional<std::vector<std::string>> DecodePath(std::string_view target) {
  target = target.substr(0, target.find_first_of("?#"));
  if (target.empty() || target.front() != '/') return std::nullopt;
  std::vector<std::string> segments;
  for (std::string_view rest = target.substr(1);;) {
    size_t slash = rest.find('/');
    std::string_view raw = rest.substr(0, slash);
    std::string segment;
    for (size_t i = 0; i < raw.size(); ++i) {
      char c = raw[i];
      if (c == '%') {
        if (i + 2 >= raw.size()) return std::nullopt;
        int hi = HexValue(raw[i + 1]);
        int lo = HexValue(raw[i + 2]);
        if (hi < 0 || lo < 0) return std::nullopt;
        c = static_cast<char>(hi * 16 + lo);
        i += 2;
        // An encoded separator or '%' has no business in a file name here: refusing it rules out
        // "..%2f" and double-encoded "%252e%252e" whatever a later layer would make of them.
        if (c == '/' || c == '%') return std::nullopt;
      }
      unsigned char u = static_cast<unsigned char>(c);
      if (u < 0x20 || u == 0x7f || c == '\\') return std::nullopt;
      segment.push_back(c);
    }
    if (!segment.empty() && segment.front() == '.') return std::nullopt;
    segments.push_back(std::move(segment));
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  return segments;
}

// True when `path` is `root` or below it, compared component by component (a plain string
// prefix would let "/srv/web-old" pass for root "/srv/web").
bool IsWithin(const fs::path& path, const fs::path& root) {
  auto p = path.begin();
  for (auto r = root.begin(); r != root.end(); ++r, ++p) {
    if (p == path.end() || *p != *r) return false;
  }
  return true;
}

std::string_view ContentType(const fs::path& path) {
  std::string ext = absl::AsciiStrToLower(path.extension().string());
  if (ext == ".html" || ext == ".htm") return "text/html; charset=utf-8";
  if (ext == ".js" || ext == ".mjs") return "text/javascript; charset=utf-8";
  if (ext == ".css") return "text/css; charset=utf-8";
  if (ext == ".json" || ext == ".map") return "application/json";
  if (ext == ".webmanifest") return "application/manifest+json";
  if (ext == ".svg") return "image/svg+xml";
  if (ext == ".png") return "image/png";
  if (ext == ".jpg" || ext == ".jpeg") return "image/jpeg";
  if (ext == ".webp") return "image/webp";
  if (ext == ".ico") return "image/x-icon";
  if (ext == ".woff2") return "font/woff2";
  if (ext == ".txt") return "text/plain; charset=utf-8";
  return "application/octet-stream";
}

// FNV-1a over the content, with the length beside it. This is a cache validator, not a security
// boundary: a client can only hurt itself with a forged ETag, and 64 bits plus the size make an
// accidental collision between two versions of one file practically impossible.
std::string StrongETag(std::string_view content) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (char c : content) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ULL;
  }
  return absl::StrCat("\"", absl::Hex(content.size()), "-", absl::Hex(hash, absl::kZeroPad16),
                      "\"");
}

// RFC 9110 13.1.2: If-None-Match uses the weak comparison, so W/"x" matches "x"; "*" matches
// any current representation. A malformed list matches nothing (the full response is safe).
bool IfNoneMatchMatches(std::string_view header, std::string_view etag) {
  std::string_view opaque = etag;  // with its quotes
  size_t i = 0;
  while (i < header.size()) {
    char c = header[i];
    if (c == ' ' || c == '\t' || c == ',') {
      ++i;
      continue;
    }
    if (c == '*') return true;
    if (header.substr(i, 2) == "W/") i += 2;
    if (i >= header.size() || header[i] != '"') return false;
    size_t close = header.find('"', i + 1);
    if (close == std::string_view::npos) return false;
    std::string_view tag = header.substr(i, close - i + 1);
    i = close + 1;
    while (i < header.size() && (header[i] == ' ' || header[i] == '\t')) ++i;
    if (i < header.size() && header[i] != ',') return false;
    if (tag == opaque) return true;
  }
  return false;
}

StaticResponse NotFound() {
  StaticResponse response;
  response.status = 404;
  response.body = "not found\n";
  response.headers = {{"Content-Type", "text/plain; charset=utf-8"},
                      {"Cache-Control", "no-cache"},
                      {"X-Content-Type-Options", "nosniff"}};
  return response;
}

}  // namespace

StaticFiles::StaticFiles(std::string root) : root_(CanonicalRoot(root)) {}

StaticResponse StaticFiles::MethodNotAllowed() {
  StaticResponse response;
  response.status = 405;
  response.body = "method not allowed\n";
  response.headers = {{"Allow", "GET, HEAD"},
                      {"Content-Type", "text/plain; charset=utf-8"},
                      {"X-Content-Type-Options", "nosniff"}};
  return response;
}

StaticResponse StaticFiles::Get(std::string_view target, std::string_view if_none_match) const {
  if (root_.empty()) return NotFound();
  std::optional<std::vector<std::string>> segments = DecodePath(target);
  if (!segments) return NotFound();
  if (segments->back().empty()) segments->back() = "index.html";

  fs::path path = root_;
  for (const std::string& segment : *segments) {
    if (segment.empty()) return NotFound();  // "//" inside a path
    path /= segment;
  }
  // canonical() resolves every symlink, so a link that leads out of the root is caught by the
  // prefix check below, whichever component it is.
  std::error_code ec;
  fs::path resolved = fs::canonical(path, ec);
  if (ec || !IsWithin(resolved, root_)) return NotFound();
  if (!fs::is_regular_file(resolved, ec) || ec) return NotFound();
  std::uintmax_t size = fs::file_size(resolved, ec);
  if (ec || size > kMaxFileBytes) return NotFound();

  std::ifstream in(resolved, std::ios::binary);
  if (!in) return NotFound();
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return NotFound();

  // The files are not content-addressed (there is no build step to put hashes in their names),
  // so a max-age could pair a new index.html with a stale app.js for that long. "no-cache" with
  // a strong ETag makes every load consistent, and revalidation of a few small files is one 304
  // each. Reading per request keeps edits visible at once and costs little for a few KiB.
  std::string etag = StrongETag(content);
  std::string_view content_type = ContentType(resolved);
  StaticResponse response;
  response.headers = {
      {"ETag", etag}, {"Cache-Control", "no-cache"}, {"X-Content-Type-Options", "nosniff"}};
  if (!if_none_match.empty() && IfNoneMatchMatches(if_none_match, etag)) {
    response.status = 304;
    return response;
  }
  response.headers.emplace_back("Content-Type", std::string(content_type));
  if (content_type.substr(0, 9) == "text/html") {
    response.headers.emplace_back("Content-Security-Policy", std::string(kContentSecurityPolicy));
    response.headers.emplace_back("Referrer-Policy", "no-referrer");
  }
  response.body = std::move(content);
  return response;
}

}  // namespace chat::edge
