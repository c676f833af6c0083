#include "edge/name_decode.h"

#include <optional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace chat::edge {
namespace {

using ::testing::HasSubstr;

// The decoded value, or "error: <reason>".
std::string Decoded(std::string_view raw) {
  absl::StatusOr<std::string> out = DecodeFormValue(raw);
  return out.ok() ? *out : "error: " + std::string(out.status().message());
}

// The user named in the target, or "error: <reason>".
std::string User(std::string_view target) {
  absl::StatusOr<std::string> out = UserFromTarget(target);
  return out.ok() ? *out : "error: " + std::string(out.status().message());
}

std::string Param(std::string_view target, std::string_view key) {
  std::optional<std::string_view> v = FindQueryParam(target, key);
  return v.has_value() ? std::string(*v) : "<absent>";
}

TEST(DecodeFormValueTest, DecodesEscapesAndPlus) {
  EXPECT_EQ(Decoded("alice"), "alice");
  EXPECT_EQ(Decoded("bob%20smith"), "bob smith");
  EXPECT_EQ(Decoded("bob+smith"), "bob smith") << "'+' is a space in form encoding";
  EXPECT_EQ(Decoded("a%2Bb"), "a+b") << "an escaped '+' stays a plus";
  EXPECT_EQ(Decoded("Zo%C3%AB"), "Zoë") << "UTF-8 escapes, upper-case hex";
  EXPECT_EQ(Decoded("Zo%c3%ab"), "Zoë") << "lower-case hex";
  EXPECT_EQ(Decoded("%F0%9F%98%80"), "😀");
  EXPECT_EQ(Decoded("%25"), "%");
  EXPECT_EQ(Decoded(""), "");
}

TEST(DecodeFormValueTest, RefusesBrokenEscapes) {
  EXPECT_THAT(Decoded("%"), HasSubstr("error"));
  EXPECT_THAT(Decoded("abc%4"), HasSubstr("error")) << "one hex digit at the end";
  EXPECT_THAT(Decoded("%zz"), HasSubstr("error"));
  EXPECT_THAT(Decoded("%4g"), HasSubstr("error"));
}

TEST(FindQueryParamTest, FindsTheFirstExactKey) {
  EXPECT_EQ(Param("/?name=alice", "name"), "alice");
  EXPECT_EQ(Param("/Prod?x=1&name=bob&y=2", "name"), "bob");
  EXPECT_EQ(Param("/?name=first&name=second", "name"), "first");
  EXPECT_EQ(Param("/?username=eve&name=bob", "name"), "bob") << "a longer key must not match";
  EXPECT_EQ(Param("/?name=bob#frag", "name"), "bob") << "the fragment is not part of the value";
  EXPECT_EQ(Param("/?name", "name"), "") << "a key without '=' has an empty value";
  EXPECT_EQ(Param("/?name=a=b", "name"), "a=b");
}

TEST(FindQueryParamTest, AbsentKeyOrNoQuery) {
  EXPECT_EQ(Param("/", "name"), "<absent>");
  EXPECT_EQ(Param("/name=alice", "name"), "<absent>") << "no '?' means no query";
  EXPECT_EQ(Param("/?user=alice", "name"), "<absent>");
  EXPECT_EQ(Param("/?", "name"), "<absent>");
}

TEST(UserFromTargetTest, AcceptsWhatBrowsersAndOldClientsSend) {
  EXPECT_EQ(User("/?name=alice"), "alice");
  EXPECT_EQ(User("/Prod?name=alice"), "alice") << "any path, e.g. an API Gateway stage";
  EXPECT_EQ(User("/ws?name=bob%20smith"), "bob smith");
  EXPECT_EQ(User("/?name=bob+smith"), "bob smith");
  EXPECT_EQ(User("/?name=Jos%C3%A9"), "José") << "what a browser makes of ?name=José";
  EXPECT_EQ(User("/?name=José"), "José") << "raw UTF-8 in the target";
}

TEST(UserFromTargetTest, RefusesWithAOneLineReason) {
  EXPECT_THAT(User("/"), HasSubstr("missing ?name="));
  EXPECT_THAT(User("/?other=1"), HasSubstr("missing ?name="));
  EXPECT_THAT(User("/?name="), HasSubstr("empty"));
  EXPECT_THAT(User("/?name=%"), HasSubstr("escape"));
  EXPECT_THAT(User("/?name=+alice"), HasSubstr("spaces")) << "'+' decodes to a leading space";
  EXPECT_THAT(User("/?name=alice%20"), HasSubstr("spaces"));
  EXPECT_THAT(User("/?name=a%00b"), HasSubstr("control"));
  EXPECT_THAT(User("/?name=a%0Ab"), HasSubstr("control"));
  EXPECT_THAT(User("/?name=%FF"), HasSubstr("UTF-8"));
  EXPECT_THAT(User("/?name=" + std::string(65, 'a')), HasSubstr("64 bytes"));
  EXPECT_EQ(User("/?name=" + std::string(64, 'a')), std::string(64, 'a'));
  for (const char* target : {"/", "/?name=%FF", "/?name=a%0Ab"}) {
    const std::string reason = User(target);
    EXPECT_EQ(reason.find('\n'), std::string::npos) << "reason for " << target << ": " << reason;
  }
}

}  // namespace
}  // namespace chat::edge
