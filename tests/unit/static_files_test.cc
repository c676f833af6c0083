#include "edge/static_files.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace chat::edge {
namespace {

namespace fs = std::filesystem;

// The value of header `name`, or "<absent>" so that a failure shows what was missing.
std::string Header(const StaticResponse& response, std::string_view name) {
  for (const auto& [key, value] : response.headers) {
    if (key == name) return value;
  }
  return "<absent>";
}

void WriteFile(const fs::path& path, std::string_view content) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << content;
}

// Layout:  <tmp>/secret.txt  <tmp>/web-old/old.txt  <tmp>/web/{index.html, app.js, ...}
class StaticFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "static_files_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    root_ = dir_ / "web";
    WriteFile(dir_ / "secret.txt", "top secret");
    WriteFile(dir_ / "web-old" / "old.txt", "old");
    WriteFile(root_ / "index.html", "<!doctype html><title>chat</title>");
    WriteFile(root_ / "app.js", "export const x = 1;");
    WriteFile(root_ / "style.css", "body{}");
    WriteFile(root_ / "logo.svg", "<svg/>");
    WriteFile(root_ / "icon.png", "png");
    WriteFile(root_ / "favicon.ico", "ico");
    WriteFile(root_ / "config.json", "{}");
    WriteFile(root_ / "font.woff2", "woff2");
    WriteFile(root_ / "blob.bin", "bin");
    WriteFile(root_ / "UPPER.JS", "js");
    WriteFile(root_ / "sub" / "index.html", "<p>sub</p>");
    WriteFile(root_ / ".hidden", "dotfile");
  }

  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  StaticResponse Get(std::string_view target, std::string_view if_none_match = "") {
    return StaticFiles(root_.string()).Get(target, if_none_match);
  }

  fs::path dir_;
  fs::path root_;
};

TEST_F(StaticFilesTest, RootServesIndexHtmlWithSecurityHeaders) {
  StaticResponse response = Get("/");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "<!doctype html><title>chat</title>");
  EXPECT_EQ(Header(response, "Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(Header(response, "Cache-Control"), "no-cache");
  EXPECT_EQ(Header(response, "X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(Header(response, "Content-Security-Policy"),
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'");
}

TEST_F(StaticFilesTest, IndexHtmlByNameAndInSubdirectory) {
  EXPECT_EQ(Get("/index.html").status, 200);
  StaticResponse sub = Get("/sub/");
  EXPECT_EQ(sub.status, 200);
  EXPECT_EQ(sub.body, "<p>sub</p>");
  // A directory without its trailing slash is not a file.
  EXPECT_EQ(Get("/sub").status, 404);
}

TEST_F(StaticFilesTest, ContentTypes) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"/app.js", "text/javascript; charset=utf-8"},
      {"/UPPER.JS", "text/javascript; charset=utf-8"},
      {"/style.css", "text/css; charset=utf-8"},
      {"/logo.svg", "image/svg+xml"},
      {"/icon.png", "image/png"},
      {"/favicon.ico", "image/x-icon"},
      {"/config.json", "application/json"},
      {"/font.woff2", "font/woff2"},
      {"/blob.bin", "application/octet-stream"},
  };
  for (const auto& [target, type] : cases) {
    StaticResponse response = Get(target);
    EXPECT_EQ(response.status, 200) << target;
    EXPECT_EQ(Header(response, "Content-Type"), type) << target;
    EXPECT_EQ(Header(response, "X-Content-Type-Options"), "nosniff") << target;
    EXPECT_EQ(Header(response, "Content-Security-Policy"), "<absent>") << target;
  }
}

TEST_F(StaticFilesTest, QueryAndFragmentAreIgnored) {
  StaticResponse response = Get("/app.js?v=1");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "export const x = 1;");
  EXPECT_EQ(Get("/?name=alice").status, 200);
  EXPECT_EQ(Get("/app.js#top").status, 200);
}

TEST_F(StaticFilesTest, PercentEncodedNamesAreDecoded) {
  WriteFile(root_ / "a b.txt", "space");
  StaticResponse response = Get("/a%20b.txt");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "space");
  EXPECT_EQ(Get("/%61pp.js").status, 200);
}

TEST_F(StaticFilesTest, StrongETagFollowsContent) {
  StaticResponse first = Get("/app.js");
  std::string etag = Header(first, "ETag");
  ASSERT_EQ(etag.front(), '"') << etag;
  ASSERT_EQ(etag.back(), '"');
  EXPECT_EQ(Header(Get("/app.js"), "ETag"), etag);
  EXPECT_NE(Header(Get("/style.css"), "ETag"), etag);
  WriteFile(root_ / "app.js", "export const x = 2;");
  EXPECT_NE(Header(Get("/app.js"), "ETag"), etag);
}

TEST_F(StaticFilesTest, IfNoneMatchGives304) {
  std::string etag = Header(Get("/app.js"), "ETag");
  const std::string matching[] = {
      etag,
      absl::StrCat("W/", etag),
      absl::StrCat("\"nope\", ", etag),
      absl::StrCat("\"a,b\" ,W/", etag, " , \"c\""),
      "*",
  };
  for (const std::string& header : matching) {
    StaticResponse response = Get("/app.js", header);
    EXPECT_EQ(response.status, 304) << "If-None-Match: " << header;
    EXPECT_EQ(response.body, "") << "If-None-Match: " << header;
    EXPECT_EQ(Header(response, "ETag"), etag) << "If-None-Match: " << header;
    EXPECT_EQ(Header(response, "Cache-Control"), "no-cache") << "If-None-Match: " << header;
  }
  const std::string not_matching[] = {"\"nope\"", etag.substr(1, etag.size() - 2), "W/", "\"",
                                      absl::StrCat(etag, "x")};
  for (const std::string& header : not_matching) {
    EXPECT_EQ(Get("/app.js", header).status, 200) << "If-None-Match: " << header;
  }
  // The HTML page revalidates the same way.
  std::string index_etag = Header(Get("/"), "ETag");
  EXPECT_EQ(Get("/", index_etag).status, 304);
}

TEST_F(StaticFilesTest, TraversalAndMalformedTargetsAre404) {
  const std::string_view targets[] = {
      "/../secret.txt",
      "/sub/../../secret.txt",
      "/sub/../index.html",  // even when it would stay inside the root
      "/./index.html",
      "/%2e%2e/secret.txt",
      "/%2E%2E/secret.txt",
      "/.%2e/secret.txt",
      "/..%2fsecret.txt",
      "/..%2Fsecret.txt",
      "/%2fetc/passwd",
      "/%252e%252e/secret.txt",
      "/%25252e%25252e/secret.txt",
      "/..\\secret.txt",
      "/%5c..%5csecret.txt",
      "/sub\\..\\..\\secret.txt",
      "/index.html%00.js",
      "/index.html%0a",
      "/%",
      "/%2",
      "/%zz",
      "/.hidden",
      "/%2ehidden",
      "//etc/passwd",
      "/sub//index.html",
      "",
      "index.html",
      "http://localhost/index.html",
      "*",
      "/missing.js",
  };
  for (std::string_view target : targets) {
    StaticResponse response = Get(target);
    EXPECT_EQ(response.status, 404) << "target: " << target;
    EXPECT_EQ(response.body, "not found\n") << "target: " << target;
  }
}

TEST_F(StaticFilesTest, SymlinksOutOfTheRootAre404) {
  std::error_code ec;
  fs::create_symlink(dir_ / "secret.txt", root_ / "link.txt", ec);
  ASSERT_FALSE(ec) << ec.message();
  fs::create_directory_symlink(dir_, root_ / "up", ec);
  ASSERT_FALSE(ec) << ec.message();
  // "web-old" starts with "web": a string prefix check would let this through.
  fs::create_symlink(dir_ / "web-old" / "old.txt", root_ / "old.txt", ec);
  ASSERT_FALSE(ec) << ec.message();
  fs::create_symlink(root_ / "app.js", root_ / "alias.js", ec);
  ASSERT_FALSE(ec) << ec.message();

  EXPECT_EQ(Get("/link.txt").status, 404);
  EXPECT_EQ(Get("/up/secret.txt").status, 404);
  EXPECT_EQ(Get("/old.txt").status, 404);
  StaticResponse alias = Get("/alias.js");
  EXPECT_EQ(alias.status, 200) << "a symlink that stays inside the root is served";
  EXPECT_EQ(alias.body, "export const x = 1;");
}

TEST_F(StaticFilesTest, RootGivenWithTrailingSlashOrRelativeParts) {
  StaticFiles files(absl::StrCat(root_.string(), "/../web/"));
  EXPECT_EQ(files.Get("/app.js", "").status, 200);
  EXPECT_EQ(files.Get("/../secret.txt", "").status, 404);
}

TEST_F(StaticFilesTest, MissingOrUnusableRootServesNothing) {
  EXPECT_EQ(StaticFiles("").Get("/", "").status, 404);
  EXPECT_EQ(StaticFiles((dir_ / "nope").string()).Get("/", "").status, 404);
  EXPECT_EQ(StaticFiles((dir_ / "secret.txt").string()).Get("/", "").status, 404);
  StaticResponse response = StaticFiles("").Get("/index.html", "");
  EXPECT_EQ(Header(response, "X-Content-Type-Options"), "nosniff");
}

TEST(StaticFilesMethodTest, MethodNotAllowedNamesTheAllowedMethods) {
  StaticResponse response = StaticFiles::MethodNotAllowed();
  EXPECT_EQ(response.status, 405);
  EXPECT_EQ(Header(response, "Allow"), "GET, HEAD");
}

}  // namespace
}  // namespace chat::edge
