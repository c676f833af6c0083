#include "common/log_format.h"

#include <string>

#include "absl/flags/marshalling.h"
#include "boost/json.hpp"
#include "gtest/gtest.h"
#include "spdlog/details/log_msg.h"

namespace chat {
namespace {

namespace json = boost::json;

std::string Quoted(std::string_view text) {
  std::string out;
  AppendJsonString(text, out);
  return out;
}

// What a JSON parser reads back from AppendJsonString's output.
std::string RoundTrip(std::string_view text) {
  return std::string(json::parse(Quoted(text)).as_string());
}

TEST(JsonStringTest, PlainTextIsQuotedAsIs) {
  EXPECT_EQ(Quoted("ws open e1-0 user=alice"), R"("ws open e1-0 user=alice")");
  EXPECT_EQ(Quoted(""), R"("")");
}

TEST(JsonStringTest, QuotesBackslashesAndControlCharactersAreEscaped) {
  EXPECT_EQ(Quoted("say \"hi\" \\ bye"), R"("say \"hi\" \\ bye")");
  EXPECT_EQ(Quoted("a\nb\rc\td"), R"("a\nb\rc\td")");
  EXPECT_EQ(Quoted(std::string("\x01\x1f\0x", 4)), R"("\u0001\u001f\u0000x")");
  const std::string every_ascii = [] {
    std::string s;
    for (int c = 0; c < 0x80; ++c) s.push_back(static_cast<char>(c));
    return s;
  }();
  EXPECT_EQ(RoundTrip(every_ascii), every_ascii);
}

TEST(JsonStringTest, WellFormedUtf8IsKept) {
  const std::string text = "Zoë 日本 \xF0\x9F\x98\x80 \xEF\xBF\xBF";
  EXPECT_EQ(Quoted(text), "\"" + text + "\"");
  EXPECT_EQ(RoundTrip(text), text);
}

TEST(JsonStringTest, MalformedUtf8BecomesReplacementCharacters) {
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(RoundTrip("a\xFFz"), "a" + fffd + "z");
  EXPECT_EQ(RoundTrip("\xC0\xAF"), fffd + fffd);                        // overlong '/'
  EXPECT_EQ(RoundTrip("\xED\xA0\x80"), fffd + fffd + fffd);             // surrogate U+D800
  EXPECT_EQ(RoundTrip("\xF4\x90\x80\x80"), fffd + fffd + fffd + fffd);  // above U+10FFFF
  EXPECT_EQ(RoundTrip("cut \xE6\x97"), "cut " + fffd + fffd);           // truncated at the end
  EXPECT_EQ(RoundTrip("\x80"), fffd);                                   // lone continuation
}

TEST(JsonLogFormatterTest, OneObjectPerLineWithTsLevelServiceAndMsg) {
  const auto time = std::chrono::system_clock::time_point(std::chrono::milliseconds(1764601987921));
  spdlog::details::log_msg msg(time, spdlog::source_loc{}, "edge", spdlog::level::warn,
                               "closed \"x\"\nnext");
  JsonLogFormatter formatter;
  spdlog::memory_buf_t out;
  formatter.format(msg, out);
  const std::string line(out.data(), out.size());
  ASSERT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "one line: " << line;
  const json::object obj = json::parse(line).as_object();
  EXPECT_EQ(obj.at("ts").as_string(), "2025-12-01T15:13:07.921Z");
  EXPECT_EQ(obj.at("level").as_string(), "warning");
  EXPECT_EQ(obj.at("service").as_string(), "edge");
  EXPECT_EQ(obj.at("msg").as_string(), "closed \"x\"\nnext");
  EXPECT_EQ(obj.size(), 4u);
  auto copy = formatter.clone();
  spdlog::memory_buf_t again;
  copy->format(msg, again);
  EXPECT_EQ(std::string(again.data(), again.size()), line);
}

TEST(LogFormatFlagTest, ParsesTextAndJsonOnly) {
  LogFormat format = LogFormat::kText;
  std::string error;
  EXPECT_TRUE(absl::ParseFlag("json", &format, &error));
  EXPECT_EQ(format, LogFormat::kJson);
  EXPECT_TRUE(absl::ParseFlag("text", &format, &error));
  EXPECT_EQ(format, LogFormat::kText);
  EXPECT_FALSE(absl::ParseFlag("xml", &format, &error));
  EXPECT_EQ(error, "must be 'text' or 'json'");
  EXPECT_EQ(absl::UnparseFlag(LogFormat::kJson), "json");
}

}  // namespace
}  // namespace chat
