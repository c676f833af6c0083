// What the edge logs for operators: with --log_format=json every stderr line
// is one JSON object (ts, level, service, msg), and every WebSocket gets one
// info line when it opens and one when it closes, saying who, from where,
// with which close code, for how long and how many frames each way.
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>

#include "absl/strings/numbers.h"
#include "tests/e2e/e2e_util.h"

namespace chat::testing {
namespace {

// The key=value fields of a message ("ws close e1-0 user=\"bob\" code=1008"):
// values are bare words or JSON strings.
std::map<std::string, std::string> Fields(std::string_view msg) {
  std::map<std::string, std::string> out;
  static const std::regex kField(R"re(([a-z_]+)=("(?:[^"\\]|\\.)*"|[^ ]*))re");
  const std::string text(msg);
  for (auto it = std::sregex_iterator(text.begin(), text.end(), kField);
       it != std::sregex_iterator(); ++it) {
    std::string value = (*it)[2];
    if (!value.empty() && value[0] == '"') value = std::string(json::parse(value).as_string());
    out[(*it)[1]] = value;
  }
  return out;
}

class JsonLog {
 public:
  // Reads the lines `path` gained after `offset`; every one must be JSON.
  static JsonLog Read(const std::string& path, std::uintmax_t offset) {
    JsonLog log;
    std::ifstream in(path);
    in.seekg(static_cast<std::streamoff>(offset));
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      boost::system::error_code ec;
      json::value v = json::parse(line, ec);
      if (ec || !v.is_object()) {
        log.bad_.push_back(line);
        continue;
      }
      log.lines_.push_back(v.as_object());
    }
    return log;
  }

  // The line whose msg starts with `prefix`, if any.
  const json::object* Find(const std::string& prefix) const {
    for (const auto& line : lines_) {
      const json::value* msg = line.if_contains("msg");
      if (msg != nullptr && msg->is_string() &&
          std::string_view(msg->get_string()).substr(0, prefix.size()) == prefix) {
        return &line;
      }
    }
    return nullptr;
  }
  const std::vector<std::string>& bad() const { return bad_; }
  size_t size() const { return lines_.size(); }

 private:
  std::vector<json::object> lines_;
  std::vector<std::string> bad_;
};

std::uintmax_t SizeOf(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  return ec ? 0 : size;
}

void ExpectShape(const json::object& line) {
  static const std::regex kTs(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)");
  EXPECT_TRUE(std::regex_match(Str(line, "ts"), kTs)) << json::serialize(line);
  EXPECT_EQ(Str(line, "level"), "info") << json::serialize(line);
  EXPECT_EQ(Str(line, "service"), "edge") << json::serialize(line);
}

TEST(LogTest, JsonLinesWithOneOpenAndOneCloseLinePerWebSocket) {
  ClusterOptions options;
  options.edge_flags = {"--log_format=json", "--bad_frames_max=1"};
  Cluster cluster("json-log", options);
  const std::string path = cluster.LogPath("edge1");
  const std::uintmax_t offset = SizeOf(path);  // the file gathers earlier runs too
  ASSERT_TRUE(cluster.Start().ok());

  // alice: one request, then she closes normally (1000).
  auto alice = Connect(cluster.edge_port(), "alice");
  ASSERT_TRUE(alice);
  const std::string alice_id = Str(alice->hello(), "connection_id");
  ASSERT_TRUE(alice->SendText(R"({"action":"ping","request_id":"p"})").ok());
  ASSERT_TRUE(alice->ReadAction("pong").ok());
  alice->Close();
  // "bob \"the\" builder": two bad frames, and the edge closes with 1008.
  auto bob = Connect(cluster.edge_port(), "bob%20%22the%22%20builder");
  ASSERT_TRUE(bob);
  const std::string bob_id = Str(bob->hello(), "connection_id");
  ASSERT_TRUE(bob->SendText("not json").ok());
  ASSERT_TRUE(bob->SendText("nor this").ok());
  auto code = bob->ReadUntilClosed();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 1008);

  JsonLog log;
  ASSERT_TRUE(Eventually([&] {
    log = JsonLog::Read(path, offset);
    return log.Find("ws close " + alice_id + " ") != nullptr &&
           log.Find("ws close " + bob_id + " ") != nullptr;
  })) << "no close lines for "
      << alice_id << " and " << bob_id << " in " << path;
  EXPECT_TRUE(log.bad().empty()) << "not JSON: " << log.bad().front();
  EXPECT_GT(log.size(), 2u);

  const std::regex loopback(R"(127\.0\.0\.1:[1-9]\d*)");
  for (const auto& [id, user, closed_with, frames_in, min_frames_out] :
       {std::tuple{alice_id, std::string("alice"), "1000", "1", 2},
        std::tuple{bob_id, std::string("bob \"the\" builder"), "1008", "2", 3}}) {
    SCOPED_TRACE(id);
    const json::object* open = log.Find("ws open " + id + " ");
    ASSERT_NE(open, nullptr);
    ExpectShape(*open);
    auto fields = Fields(open->at("msg").as_string());
    EXPECT_EQ(fields["user"], user);
    EXPECT_TRUE(std::regex_match(fields["remote"], loopback)) << fields["remote"];

    const json::object* close = log.Find("ws close " + id + " ");
    ASSERT_NE(close, nullptr);
    ExpectShape(*close);
    auto closed = Fields(close->at("msg").as_string());
    EXPECT_EQ(closed["user"], user);
    EXPECT_EQ(closed["remote"], fields["remote"]);
    EXPECT_EQ(closed["code"], closed_with);
    EXPECT_TRUE(std::regex_match(closed["duration_ms"], std::regex(R"(\d+)")))
        << closed["duration_ms"];
    EXPECT_EQ(closed["frames_in"], frames_in);
    // hello and the answers; the edge may send more (presence, sync).
    int frames_out = 0;
    EXPECT_TRUE(absl::SimpleAtoi(closed["frames_out"], &frames_out)) << closed["frames_out"];
    EXPECT_GE(frames_out, min_frames_out);
  }
}

}  // namespace
}  // namespace chat::testing
