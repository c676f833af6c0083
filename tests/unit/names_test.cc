#include "common/names.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace chat {
namespace {

using ::testing::HasSubstr;

// "ok" or the reason ValidateUserName gave, so that a failure shows both.
std::string Verdict(const std::string& name) {
  absl::Status s = ValidateUserName(name);
  return s.ok() ? "ok" : std::string(s.message());
}

TEST(ValidateUserNameTest, AcceptsOrdinaryNames) {
  EXPECT_EQ(Verdict("alice"), "ok");
  EXPECT_EQ(Verdict("Bob Smith"), "ok") << "inner spaces are allowed";
  EXPECT_EQ(Verdict("Zoë"), "ok");
  EXPECT_EQ(Verdict("用户"), "ok");
  EXPECT_EQ(Verdict("😀"), "ok");
  EXPECT_EQ(Verdict("<script>"), "ok") << "names are text, rendering is the client's job";
}

TEST(ValidateUserNameTest, LengthIsCountedInBytesOneTo64) {
  EXPECT_EQ(Verdict("x"), "ok");
  EXPECT_EQ(Verdict(std::string(64, 'a')), "ok");
  EXPECT_THAT(Verdict(std::string(65, 'a')), HasSubstr("64 bytes"));
  std::string two_byte_64;
  for (int i = 0; i < 32; ++i) two_byte_64 += "é";
  ASSERT_EQ(two_byte_64.size(), 64u);
  EXPECT_EQ(Verdict(two_byte_64), "ok");
  EXPECT_THAT(Verdict(two_byte_64 + "a"), HasSubstr("64 bytes"))
      << "33 characters but 65 bytes must be refused";
}

TEST(ValidateUserNameTest, RefusesEmpty) { EXPECT_THAT(Verdict(""), HasSubstr("empty")); }

TEST(ValidateUserNameTest, RefusesControlCharacters) {
  EXPECT_THAT(Verdict(std::string("a\0b", 3)), HasSubstr("control"));
  EXPECT_THAT(Verdict("a\tb"), HasSubstr("control"));
  EXPECT_THAT(Verdict("a\nb"), HasSubstr("control"));
  EXPECT_THAT(Verdict("a\x7f"), HasSubstr("control")) << "DEL";
  EXPECT_THAT(Verdict("a\xc2\x85"), HasSubstr("control")) << "U+0085 NEL is a C1 control";
  EXPECT_THAT(Verdict("a\xc2\x9f"), HasSubstr("control")) << "U+009F is a C1 control";
  EXPECT_EQ(Verdict("a\xc2\xa0z"), "ok") << "U+00A0 is not a control character";
}

TEST(ValidateUserNameTest, RefusesLeadingAndTrailingSpaces) {
  EXPECT_THAT(Verdict(" alice"), HasSubstr("spaces"));
  EXPECT_THAT(Verdict("alice "), HasSubstr("spaces"));
  EXPECT_THAT(Verdict(" "), HasSubstr("spaces"));
}

TEST(ValidateUserNameTest, RefusesInvalidUtf8) {
  EXPECT_THAT(Verdict("al\xffice"), HasSubstr("UTF-8"));
  EXPECT_THAT(Verdict("\xc3"), HasSubstr("UTF-8")) << "truncated sequence";
}

TEST(IsValidUtf8Test, AcceptsWellFormedText) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("\xc2\x80"));          // U+0080, smallest 2-byte
  EXPECT_TRUE(IsValidUtf8("\xe0\xa0\x80"));      // U+0800, smallest 3-byte
  EXPECT_TRUE(IsValidUtf8("\xef\xbf\xbf"));      // U+FFFF
  EXPECT_TRUE(IsValidUtf8("\xf0\x90\x80\x80"));  // U+10000, smallest 4-byte
  EXPECT_TRUE(IsValidUtf8("\xf4\x8f\xbf\xbf"));  // U+10FFFF, the last code point
  EXPECT_TRUE(IsValidUtf8(std::string("nul\0inside", 10)));
}

TEST(IsValidUtf8Test, RefusesMalformedText) {
  EXPECT_FALSE(IsValidUtf8("\x80")) << "lone continuation byte";
  EXPECT_FALSE(IsValidUtf8("\xc3")) << "truncated 2-byte sequence";
  EXPECT_FALSE(IsValidUtf8("\xe2\x82")) << "truncated 3-byte sequence";
  EXPECT_FALSE(IsValidUtf8("\xc3(")) << "bad continuation byte";
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf")) << "overlong '/' (2 bytes)";
  EXPECT_FALSE(IsValidUtf8("\xe0\x80\xaf")) << "overlong '/' (3 bytes)";
  EXPECT_FALSE(IsValidUtf8("\xf0\x80\x80\xaf")) << "overlong '/' (4 bytes)";
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80")) << "UTF-16 surrogate U+D800";
  EXPECT_FALSE(IsValidUtf8("\xed\xbf\xbf")) << "UTF-16 surrogate U+DFFF";
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80")) << "U+110000 is beyond Unicode";
  EXPECT_FALSE(IsValidUtf8("\xf8\x88\x80\x80\x80")) << "5-byte form";
  EXPECT_FALSE(IsValidUtf8("\xff")) << "never valid in UTF-8";
}

}  // namespace
}  // namespace chat
