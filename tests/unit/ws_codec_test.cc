// The WebSocket codec against the cases of the Autobahn testsuite (sections
// 1-7 and 9; 10 and 12-13 are about fragmentation on send and compression,
// which the edge never does). Every input is parsed whole, one byte at a
// time and in odd chunks, and must give the same events each way.
#include "edge/ws_codec.h"

#include <cstdint>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace chat::edge {
namespace {

using Kind = WsFrameParser::Event::Kind;

constexpr size_t kMax = 1 << 20;

constexpr uint8_t kCont = 0x0, kText = 0x1, kBinary = 0x2, kClose = 0x8, kPing = 0x9, kPong = 0xA;

// A client frame: masked unless told otherwise.
std::string Frame(uint8_t opcode, std::string_view payload, bool fin = true, uint8_t rsv = 0,
                  bool masked = true) {
  static constexpr uint8_t kKey[4] = {0x37, 0xfa, 0x21, 0x3d};
  std::string out;
  out.push_back(static_cast<char>((fin ? 0x80 : 0) | (rsv << 4) | opcode));
  const uint8_t mask_bit = masked ? 0x80 : 0;
  if (payload.size() < 126) {
    out.push_back(static_cast<char>(mask_bit | payload.size()));
  } else if (payload.size() <= 0xFFFF) {
    out.push_back(static_cast<char>(mask_bit | 126));
    out.push_back(static_cast<char>(payload.size() >> 8));
    out.push_back(static_cast<char>(payload.size()));
  } else {
    out.push_back(static_cast<char>(mask_bit | 127));
    for (int i = 7; i >= 0; --i)
      out.push_back(static_cast<char>(uint64_t{payload.size()} >> (8 * i)));
  }
  if (masked) out.append(reinterpret_cast<const char*>(kKey), 4);
  for (size_t i = 0; i < payload.size(); ++i) {
    out.push_back(static_cast<char>(payload[i] ^ (masked ? kKey[i % 4] : 0)));
  }
  return out;
}

std::string Close(uint16_t code, std::string_view reason = "") {
  std::string payload{static_cast<char>(code >> 8), static_cast<char>(code & 0xFF)};
  payload.append(reason);
  return Frame(kClose, payload);
}

struct Got {
  Kind kind;
  std::string payload;
  uint16_t code = 0;
  bool operator==(const Got& o) const {
    return kind == o.kind && payload == o.payload && code == o.code;
  }
};

std::ostream& operator<<(std::ostream& os, const Got& g) {
  return os << "{kind=" << static_cast<int>(g.kind) << " size=" << g.payload.size()
            << " code=" << g.code << "}";
}

Got Text(std::string s) { return {Kind::kText, std::move(s)}; }
Got Binary(std::string s) { return {Kind::kBinary, std::move(s)}; }
Got Ping(std::string s) { return {Kind::kPing, std::move(s)}; }
Got Pong(std::string s) { return {Kind::kPong, std::move(s)}; }
Got Closed(uint16_t code, std::string reason = "") {
  return {Kind::kClose, std::move(reason), code};
}
Got Error(uint16_t code) { return {Kind::kError, "", code}; }

// Feeds `bytes` in chunks of `chunk` bytes (0: whole); stops at an error.
std::vector<Got> ParseInChunks(const std::string& bytes, size_t chunk, size_t max) {
  WsFrameParser parser(max);
  std::vector<Got> got;
  size_t at = 0;
  while (at < bytes.size()) {
    const size_t n = chunk == 0 ? bytes.size() : std::min(chunk, bytes.size() - at);
    std::string scratch = bytes.substr(at, n);  // writable, like the session's
    at += n;
    size_t offset = 0;
    while (offset < scratch.size()) {
      size_t used = 0;
      auto event = parser.Next(scratch.data() + offset, scratch.size() - offset, &used);
      EXPECT_LE(used, scratch.size() - offset);
      offset += used;
      if (event.kind == Kind::kNeedMore) {
        EXPECT_EQ(offset, scratch.size());
        break;
      }
      got.push_back({event.kind, std::string(event.payload), event.code});
      if (event.kind == Kind::kError) {
        EXPECT_TRUE(parser.failed());
        // Whatever follows is ignored.
        size_t rest = 0;
        EXPECT_EQ(parser.Next(scratch.data() + offset, scratch.size() - offset, &rest).kind,
                  Kind::kNeedMore);
        return got;
      }
    }
  }
  // Between messages, nothing is held.
  size_t used = 0;
  parser.Next(nullptr, 0, &used);
  if (parser.idle()) {
    EXPECT_EQ(parser.buffered_bytes(), 0u);
  }
  return got;
}

// Whole, byte by byte, and in chunks of 2, 3, 7 and 1000: the same events.
std::vector<Got> Parse(const std::string& bytes, size_t max = kMax) {
  std::vector<Got> whole = ParseInChunks(bytes, 0, max);
  for (size_t chunk : {1, 2, 3, 7, 1000}) {
    if (chunk == 1 && bytes.size() > (1 << 18)) continue;  // slow and adds nothing
    EXPECT_EQ(ParseInChunks(bytes, chunk, max), whole) << "chunks of " << chunk;
  }
  return whole;
}

using ::testing::ElementsAre;

// --- 1: framing --------------------------------------------------------------

TEST(WsCodecAutobahn1, TextAndBinaryOfEveryLengthEncoding) {
  for (size_t size : {0, 125, 126, 127, 128, 65535, 65536}) {
    const std::string text(size, '*');
    EXPECT_THAT(Parse(Frame(kText, text)), ElementsAre(Text(text))) << size;
    const std::string binary(size, '\xfe');
    EXPECT_THAT(Parse(Frame(kBinary, binary)), ElementsAre(Binary(binary))) << size;
  }
}

TEST(WsCodecAutobahn1, SeveralFramesInOneChunk) {
  EXPECT_THAT(Parse(Frame(kText, "a") + Frame(kBinary, "b") + Frame(kText, "")),
              ElementsAre(Text("a"), Binary("b"), Text("")));
}

TEST(WsCodecAutobahn1, UnmaskedClientFrameIsAProtocolError) {
  EXPECT_THAT(Parse(Frame(kText, "hello", true, 0, false)), ElementsAre(Error(1002)));
}

TEST(WsCodecAutobahn1, SixtyFourBitLengthWithTheHighBitSetFails) {
  std::string frame = "\x81\xff";
  frame += std::string("\x80\0\0\0\0\0\0\x05", 8);
  frame += std::string("\x37\xfa\x21\x3d", 4);
  EXPECT_THAT(Parse(frame), ElementsAre(Error(1002)));
}

// --- 2: pings and pongs ---------------------------------------------------

TEST(WsCodecAutobahn2, PingsWithAndWithoutPayload) {
  EXPECT_THAT(Parse(Frame(kPing, "")), ElementsAre(Ping("")));
  EXPECT_THAT(Parse(Frame(kPing, "Hello, world!")), ElementsAre(Ping("Hello, world!")));
  EXPECT_THAT(Parse(Frame(kPing, std::string("\x00\xff\xfe\xfd\xfc\xfb\x00\xff", 8))),
              ElementsAre(Ping(std::string("\x00\xff\xfe\xfd\xfc\xfb\x00\xff", 8))));
  const std::string p125(125, '\xfe');
  EXPECT_THAT(Parse(Frame(kPing, p125)), ElementsAre(Ping(p125)));
}

TEST(WsCodecAutobahn2, PingOf126BytesFails) {
  EXPECT_THAT(Parse(Frame(kPing, std::string(126, 'x'))), ElementsAre(Error(1002)));
}

TEST(WsCodecAutobahn2, UnsolicitedPongsAndTenPings) {
  EXPECT_THAT(Parse(Frame(kPong, "")), ElementsAre(Pong("")));
  EXPECT_THAT(Parse(Frame(kPong, "unsolicited") + Frame(kPing, "solicited")),
              ElementsAre(Pong("unsolicited"), Ping("solicited")));
  std::string ten;
  std::vector<Got> want;
  for (int i = 0; i < 10; ++i) {
    ten += Frame(kPing, "payload-" + std::to_string(i));
    want.push_back(Ping("payload-" + std::to_string(i)));
  }
  EXPECT_EQ(Parse(ten), want);
}

// --- 3: reserved bits -----------------------------------------------------

TEST(WsCodecAutobahn3, AnyReservedBitFailsWhateverTheFrame) {
  for (uint8_t rsv = 1; rsv <= 7; ++rsv) {
    for (uint8_t opcode : {kText, kBinary, kPing, kClose}) {
      const std::string payload = opcode == kClose ? std::string("\x03\xe8", 2) : "x";
      // After a valid frame, so the failure is the reserved bit's.
      EXPECT_THAT(Parse(Frame(kText, "ok") + Frame(opcode, payload, true, rsv)),
                  ElementsAre(Text("ok"), Error(1002)))
          << int{rsv} << " " << int{opcode};
    }
  }
}

// --- 4: opcodes -----------------------------------------------------------

TEST(WsCodecAutobahn4, ReservedOpcodesFail) {
  for (uint8_t opcode : {3, 4, 5, 6, 7, 11, 12, 13, 14, 15}) {
    EXPECT_THAT(Parse(Frame(kText, "ok") + Frame(opcode, "x") + Frame(kPing, "")),
                ElementsAre(Text("ok"), Error(1002)))
        << int{opcode};
    EXPECT_THAT(Parse(Frame(opcode, "")), ElementsAre(Error(1002))) << int{opcode};
  }
}

// --- 5: fragmentation -----------------------------------------------------

TEST(WsCodecAutobahn5, FragmentedControlFramesFail) {
  EXPECT_THAT(Parse(Frame(kPing, "frag1", false) + Frame(kCont, "frag2")),
              ElementsAre(Error(1002)));
  EXPECT_THAT(Parse(Frame(kPong, "frag1", false) + Frame(kCont, "frag2")),
              ElementsAre(Error(1002)));
  EXPECT_THAT(Parse(Frame(kClose, std::string("\x03\xe8", 2), false)), ElementsAre(Error(1002)));
}

TEST(WsCodecAutobahn5, FragmentsAreJoined) {
  EXPECT_THAT(Parse(Frame(kText, "fragment1", false) + Frame(kCont, "fragment2")),
              ElementsAre(Text("fragment1fragment2")));
  EXPECT_THAT(Parse(Frame(kBinary, "\x01", false) + Frame(kCont, "", false) + Frame(kCont, "\x02")),
              ElementsAre(Binary("\x01\x02")));
  // Empty first and last fragments.
  EXPECT_THAT(Parse(Frame(kText, "", false) + Frame(kCont, "abc", false) + Frame(kCont, "")),
              ElementsAre(Text("abc")));
}

TEST(WsCodecAutobahn5, ControlFramesBetweenFragments) {
  EXPECT_THAT(Parse(Frame(kText, "fragment1", false) + Frame(kPing, "ping") + Frame(kPong, "pong") +
                    Frame(kCont, "fragment2")),
              ElementsAre(Ping("ping"), Pong("pong"), Text("fragment1fragment2")));
  // A close in the middle ends the exchange; what follows is the session's business.
  EXPECT_THAT(Parse(Frame(kText, "a", false) + Close(1000) + Frame(kCont, "b")),
              ElementsAre(Closed(1000), Text("ab")));
  // 5.19/5.20: several fragments, pings between each.
  std::string frames;
  std::vector<Got> want;
  for (int i = 1; i <= 5; ++i) {
    frames += Frame(i == 1 ? kText : kCont, "fragment" + std::to_string(i), i == 5);
    if (i < 5) {
      frames += Frame(kPing, "pongme " + std::to_string(i));
      want.push_back(Ping("pongme " + std::to_string(i)));
    }
  }
  want.push_back(Text("fragment1fragment2fragment3fragment4fragment5"));
  EXPECT_EQ(Parse(frames), want);
}

TEST(WsCodecAutobahn5, ContinuationWithNothingToContinueFails) {
  EXPECT_THAT(Parse(Frame(kCont, "non-continuation payload")), ElementsAre(Error(1002)));
  EXPECT_THAT(Parse(Frame(kCont, "fragment1", false) + Frame(kCont, "fragment2")),
              ElementsAre(Error(1002)));
  // 5.15-5.17: after a complete fragmented message.
  EXPECT_THAT(Parse(Frame(kText, "fragment1", false) + Frame(kCont, "fragment2") +
                    Frame(kCont, "fragment3", false) + Frame(kText, "fragment4")),
              ElementsAre(Text("fragment1fragment2"), Error(1002)));
}

TEST(WsCodecAutobahn5, NewDataFrameInsideAFragmentedMessageFails) {
  EXPECT_THAT(Parse(Frame(kText, "fragment1", false) + Frame(kText, "fragment2", false)),
              ElementsAre(Error(1002)));
  EXPECT_THAT(Parse(Frame(kText, "fragment1", false) + Frame(kBinary, "fragment2")),
              ElementsAre(Error(1002)));
}

// --- 6: UTF-8 ---------------------------------------------------------------

const std::vector<std::string>& ValidTexts() {
  static const auto* texts = new std::vector<std::string>{
      "",
      "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!",
      "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",  // κόσμε
      // First possible sequence of each length.
      std::string("\x00", 1),
      "\xc2\x80",
      "\xe0\xa0\x80",
      "\xf0\x90\x80\x80",
      // Last possible.
      "\x7f",
      "\xdf\xbf",
      "\xef\xbf\xbf",
      "\xf4\x8f\xbf\xbf",
      // Other boundaries: U+D7FF, U+E000, U+FFFD, U+10FFFF.
      "\xed\x9f\xbf",
      "\xee\x80\x80",
      "\xef\xbf\xbd",
      // Noncharacters are valid UTF-8: U+FFFE, U+FFFF, U+FDD0, U+1FFFE.
      "\xef\xbf\xbe",
      "\xef\xbf\xbf",
      "\xef\xb7\x90",
      "\xf0\x9f\xbf\xbe",
      // BOM and emoji.
      "\xef\xbb\xbf",
      "\xf0\x9f\x98\x80 chat",
  };
  return *texts;
}

const std::vector<std::string>& InvalidTexts() {
  static const auto* texts = new std::vector<std::string>{
      // κόσμε with an invalid byte after it (6.3, 6.4).
      "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
      // Five- and six-byte forms (6.8, 6.10).
      "\xf8\x88\x80\x80\x80",
      "\xfc\x84\x80\x80\x80\x80",
      "\xfb\xbf\xbf\xbf\xbf",
      "\xfd\xbf\xbf\xbf\xbf\xbf",
      // Above U+10FFFF.
      "\xf4\x90\x80\x80",
      "\xf7\xbf\xbf\xbf",
      // Unexpected continuation bytes (6.12).
      "\x80",
      "\xbf",
      "\x80\xbf",
      "\x80\xbf\x80",
      // Lonely start bytes (6.13).
      "\xc0\x20",
      "\xe0\x20",
      "\xf0\x20",
      "\xf8\x20",
      "\xfc\x20",
      // Sequences with their last byte missing, at the end of the message (6.14, 6.15).
      "\xc2",
      "\xe0\xa0",
      "\xf0\x90\x80",
      "\xdf",
      "\xef\xbf",
      "\xf4\x8f\xbf",
      "abc\xe2\x82",
      // Impossible bytes (6.16).
      "\xfe",
      "\xff",
      "\xfe\xfe\xff\xff",
      // Overlong ASCII and maximum overlong forms (6.17, 6.18), overlong NUL (6.19).
      "\xc0\xaf",
      "\xe0\x80\xaf",
      "\xf0\x80\x80\xaf",
      "\xc1\xbf",
      "\xe0\x9f\xbf",
      "\xf0\x8f\xbf\xbf",
      "\xc0\x80",
      "\xe0\x80\x80",
      "\xf0\x80\x80\x80",
      // Single and paired UTF-16 surrogates (6.20, 6.21).
      "\xed\xa0\x80",
      "\xed\xad\xbf",
      "\xed\xae\x80",
      "\xed\xaf\xbf",
      "\xed\xb0\x80",
      "\xed\xbe\x80",
      "\xed\xbf\xbf",
      "\xed\xa0\x80\xed\xb0\x80",
      "\xed\xaf\xbf\xed\xbf\xbf",
  };
  return *texts;
}

// `text` as a message of one fragment per byte (6.2, 6.6: split at every byte).
std::string OneFragmentPerByte(const std::string& text) {
  if (text.empty()) return Frame(kText, "");
  std::string frames;
  for (size_t i = 0; i < text.size(); ++i) {
    frames += Frame(i == 0 ? kText : kCont, text.substr(i, 1), i + 1 == text.size());
  }
  return frames;
}

TEST(WsCodecAutobahn6, ValidTextWholeAndSplitAtEveryByte) {
  for (const std::string& text : ValidTexts()) {
    EXPECT_TRUE(IsValidUtf8(text));
    EXPECT_THAT(Parse(Frame(kText, text)), ElementsAre(Text(text)));
    EXPECT_THAT(Parse(OneFragmentPerByte(text)), ElementsAre(Text(text)));
    // Split in two fragments at every position.
    for (size_t cut = 0; cut <= text.size(); ++cut) {
      EXPECT_THAT(Parse(Frame(kText, text.substr(0, cut), false) + Frame(kCont, text.substr(cut))),
                  ElementsAre(Text(text)));
    }
  }
}

TEST(WsCodecAutobahn6, InvalidTextFailsWith1007WholeAndSplitAtEveryByte) {
  for (const std::string& text : InvalidTexts()) {
    EXPECT_FALSE(IsValidUtf8(text)) << ::testing::PrintToString(text);
    EXPECT_THAT(Parse(Frame(kText, text)), ElementsAre(Error(1007)))
        << ::testing::PrintToString(text);
    EXPECT_THAT(Parse(OneFragmentPerByte(text)), ElementsAre(Error(1007)))
        << ::testing::PrintToString(text);
    // Binary messages are not checked.
    EXPECT_THAT(Parse(Frame(kBinary, text)), ElementsAre(Binary(text)));
  }
}

TEST(WsCodecAutobahn6, InvalidUtf8FailsFastBeforeTheMessageEnds) {
  // 6.4.1-6.4.4: the bad bytes come in a first fragment (or the first part
  // of a frame); the failure must not wait for the rest.
  const std::string bad = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80";
  EXPECT_THAT(ParseInChunks(Frame(kText, bad, false), 0, kMax), ElementsAre(Error(1007)));
  const std::string frame = Frame(kText, bad + std::string(1000, 'x'));
  // Only the head and the bytes up to the bad one: already failed.
  const size_t up_to_bad = 2 + 2 + 4 + 13;  // κόσμε is 11 bytes; F4 90 fails at 90
  for (size_t chunk : {0, 1, 5}) {
    WsFrameParser parser(kMax);
    std::string part = frame.substr(0, up_to_bad);
    bool failed = false;
    for (size_t at = 0; at < part.size() && !failed;) {
      size_t used = 0;
      const size_t n = chunk == 0 ? part.size() - at : std::min(chunk, part.size() - at);
      auto event = parser.Next(part.data() + at, n, &used);
      at += used;
      failed = event.kind == Kind::kError;
      if (failed) {
        EXPECT_EQ(event.code, 1007);
      }
    }
    EXPECT_TRUE(failed) << chunk;
  }
}

TEST(WsCodecAutobahn6, ValidatorAcrossFeeds) {
  Utf8Validator v;
  EXPECT_TRUE(v.Feed("\xf0\x9f"));
  EXPECT_FALSE(v.Complete());
  EXPECT_TRUE(v.Feed("\x98\x80"));
  EXPECT_TRUE(v.Complete());
  EXPECT_FALSE(v.Feed("\xed\xa0"));
  EXPECT_FALSE(v.Feed("a"));  // stays failed
}

// --- 7: close handling -----------------------------------------------------

TEST(WsCodecAutobahn7, CloseFrames) {
  EXPECT_THAT(Parse(Frame(kClose, "")), ElementsAre(Closed(1005)));
  EXPECT_THAT(Parse(Close(1000)), ElementsAre(Closed(1000)));
  EXPECT_THAT(Parse(Close(1000, "Hello World!")), ElementsAre(Closed(1000, "Hello World!")));
  const std::string reason123(123, '*');
  EXPECT_THAT(Parse(Close(1000, reason123)), ElementsAre(Closed(1000, reason123)));
  // 7.1.x: the frames after a close are still parsed; the session ignores them.
  EXPECT_THAT(Parse(Close(1000) + Frame(kPing, "x") + Frame(kText, "y")),
              ElementsAre(Closed(1000), Ping("x"), Text("y")));
}

TEST(WsCodecAutobahn7, BadCloseFramesFail) {
  EXPECT_THAT(Parse(Frame(kClose, "a")), ElementsAre(Error(1002)));  // 7.3.2: one byte
  EXPECT_THAT(Parse(Close(1000, std::string(124, '*'))), ElementsAre(Error(1002)));  // 7.3.6
  EXPECT_THAT(Parse(Close(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80")),
              ElementsAre(Error(1007)));  // 7.5.1
}

TEST(WsCodecAutobahn7, CloseCodes) {
  for (uint16_t code : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
                        3000, 3999, 4000, 4999}) {
    EXPECT_TRUE(IsValidReceivedCloseCode(code)) << code;
    EXPECT_THAT(Parse(Close(code)), ElementsAre(Closed(code)));
  }
  for (uint16_t code : {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535}) {
    EXPECT_FALSE(IsValidReceivedCloseCode(code)) << code;
    EXPECT_THAT(Parse(Close(code)), ElementsAre(Error(1002))) << code;
  }
}

// --- 9: large messages and the size limit ----------------------------------

TEST(WsCodecAutobahn9, LargeMessagesUpToTheLimit) {
  for (size_t size : {size_t{1} << 16, size_t{1} << 18, size_t{1} << 20}) {
    const std::string text(size, 'x');
    EXPECT_THAT(ParseInChunks(Frame(kText, text), 0, size), ElementsAre(Text(text)));
    EXPECT_THAT(ParseInChunks(Frame(kBinary, text), 4096, size), ElementsAre(Binary(text)));
    // In fragments of 1 KiB each.
    std::string frames;
    for (size_t at = 0; at < size; at += 1024) {
      frames += Frame(at == 0 ? kText : kCont, text.substr(at, 1024), at + 1024 >= size);
    }
    EXPECT_THAT(ParseInChunks(frames, 1000, size), ElementsAre(Text(text)));
  }
}

TEST(WsCodecAutobahn9, OverTheLimitFailsWith1009AtTheHeader) {
  const size_t max = 1000;
  EXPECT_THAT(Parse(Frame(kText, std::string(1000, 'x')), max),
              ElementsAre(Text(std::string(1000, 'x'))));
  EXPECT_THAT(Parse(Frame(kText, std::string(1001, 'x')), max), ElementsAre(Error(1009)));
  EXPECT_THAT(Parse(Frame(kBinary, std::string(70000, 'x')), max), ElementsAre(Error(1009)));
  // The header alone is enough: no payload is awaited or stored.
  EXPECT_THAT(ParseInChunks(Frame(kText, std::string(5000, 'x')).substr(0, 8), 0, max),
              ElementsAre(Error(1009)));
  // Many small fragments adding up to more than the limit.
  std::string frames = Frame(kText, std::string(600, 'x'), false) + Frame(kPing, "p") +
                       Frame(kCont, std::string(401, 'x'));
  EXPECT_THAT(Parse(frames, max), ElementsAre(Ping("p"), Error(1009)));
  // Control frames do not count towards a message.
  EXPECT_THAT(Parse(Frame(kText, std::string(990, 'x'), false) +
                        Frame(kPing, std::string(100, 'p')) + Frame(kCont, std::string(10, 'x')),
                    max),
              ElementsAre(Ping(std::string(100, 'p')), Text(std::string(1000, 'x'))));
  // A message after a full one starts from zero again.
  EXPECT_THAT(
      Parse(Frame(kText, std::string(1000, 'a')) + Frame(kText, std::string(1000, 'b')), max),
      ElementsAre(Text(std::string(1000, 'a')), Text(std::string(1000, 'b'))));
}

// --- memory -------------------------------------------------------------------

TEST(WsCodecMemory, AWholeFrameInOneChunkIsNotCopied) {
  WsFrameParser parser(kMax);
  std::string bytes = Frame(kText, std::string(300, 'z'));
  size_t used = 0;
  auto event = parser.Next(bytes.data(), bytes.size(), &used);
  ASSERT_EQ(event.kind, Kind::kText);
  EXPECT_EQ(used, bytes.size());
  EXPECT_GE(event.payload.data(), bytes.data());
  EXPECT_LT(event.payload.data(), bytes.data() + bytes.size());
  EXPECT_EQ(parser.buffered_bytes(), 0u);
}

TEST(WsCodecMemory, ASplitMessageIsHeldUntilDeliveredThenReleased) {
  WsFrameParser parser(kMax);
  std::string bytes = Frame(kText, std::string(300, 'z'));
  std::string first = bytes.substr(0, 100), second = bytes.substr(100);
  size_t used = 0;
  EXPECT_EQ(parser.Next(first.data(), first.size(), &used).kind, Kind::kNeedMore);
  EXPECT_FALSE(parser.idle());
  EXPECT_GT(parser.buffered_bytes(), 0u);
  EXPECT_EQ(parser.Next(second.data(), second.size(), &used).kind, Kind::kText);
  EXPECT_TRUE(parser.idle());
  parser.Next(nullptr, 0, &used);
  EXPECT_EQ(parser.buffered_bytes(), 0u);
}

// --- encoder -------------------------------------------------------------------

TEST(WsCodecEncoder, ServerHeadersAreUnmaskedWithMinimalLengths) {
  uint8_t h[kWsMaxServerHeader];
  ASSERT_EQ(EncodeServerHeader(WsOpcode::kText, 5, h), 2u);
  EXPECT_EQ(h[0], 0x81);
  EXPECT_EQ(h[1], 5);
  ASSERT_EQ(EncodeServerHeader(WsOpcode::kText, 125, h), 2u);
  EXPECT_EQ(h[1], 125);
  ASSERT_EQ(EncodeServerHeader(WsOpcode::kText, 126, h), 4u);
  EXPECT_EQ(h[1], 126);
  EXPECT_EQ(h[2], 0);
  EXPECT_EQ(h[3], 126);
  ASSERT_EQ(EncodeServerHeader(WsOpcode::kText, 65535, h), 4u);
  ASSERT_EQ(EncodeServerHeader(WsOpcode::kBinary, 65536, h), 10u);
  EXPECT_EQ(h[0], 0x82);
  EXPECT_EQ(h[1], 127);
  EXPECT_EQ(h[7], 1);
  EXPECT_EQ(h[8], 0);
  EXPECT_EQ(h[9], 0);
}

TEST(WsCodecEncoder, ControlAndCloseFrames) {
  std::string out;
  AppendControlFrame(WsOpcode::kPong, "abc", out);
  EXPECT_EQ(out, std::string("\x8a\x03"
                             "abc",
                             5));
  out.clear();
  AppendCloseFrame(4008, "slow", out);
  EXPECT_EQ(out, std::string("\x88\x06\x0f\xa8slow", 8));
  // A long reason is cut to 123 bytes without splitting a character.
  out.clear();
  std::string reason = std::string(122, 'x') + "\xc3\xa9";
  AppendCloseFrame(1000, reason, out);
  EXPECT_EQ(out.size(), 2u + 2u + 122u);
  EXPECT_TRUE(IsValidUtf8(out.substr(4)));
}

TEST(WsCodecHandshake, AcceptKeyOfRfc6455) {
  EXPECT_EQ(WebSocketAccept("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

}  // namespace
}  // namespace chat::edge
