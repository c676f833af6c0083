#ifndef CHAT_EDGE_WS_CODEC_H_
#define CHAT_EDGE_WS_CODEC_H_

// WebSocket framing (RFC 6455), server side, without any transport.
//
// Why our own: Beast's websocket::stream keeps a read buffer of its own plus
// the state of a pending read (~2 KiB) for every connection, even a silent
// one. This codec holds nothing between messages: a session waits for the
// socket to become readable, reads into a scratch buffer of its thread and
// feeds the bytes here; only a frame or message split across reads is copied
// (into `message_`, released once delivered).
//
// Parsing (client to server):
// - A frame is a 2-byte head (FIN, RSV1-3, opcode; MASK, 7-bit length), then
//   a 16-bit (length 126) or 64-bit (127) length, then the 4-byte mask key,
//   then the payload XORed with the key. Bytes may arrive split anywhere.
// - Every client frame must be masked; no extension is negotiated, so RSV
//   bits must be 0; opcodes other than 0, 1, 2, 8, 9, 10 are errors.
// - Control frames (close, ping, pong) have FIN set and at most 125 bytes,
//   and may come between the fragments of a data message.
// - A data message is a text/binary frame, then continuation frames until
//   one has FIN. A continuation with nothing open, or a new text/binary
//   while one is open, is an error.
// - Text is checked as UTF-8 while it arrives (across fragments, failing at
//   the first impossible byte) and once more at the message's end (no
//   truncated character).
// - A message (all its fragments) longer than the limit fails with 1009 as
//   soon as a frame header announces it; the payload is never read.
// - A close frame carries nothing, or a 2-byte code (RFC 6455 §7.4: 1000-1003,
//   1007-1014, 3000-4999) and an optional UTF-8 reason; 1 byte is an error.
// Errors say which close code to answer with: 1002 (protocol), 1007 (bad
// UTF-8), 1009 (too big). The parser then stops: later bytes are ignored.
//
// Writing (server to client): frames are never masked and never fragmented;
// the header (2, 4 or 10 bytes) is produced on its own so that a session can
// write header and shared payload with one gather write.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace chat::edge {

enum class WsOpcode : uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xA,
};

// Close codes the codec itself produces or reports.
inline constexpr uint16_t kWsCloseProtocolError = 1002;
inline constexpr uint16_t kWsCloseNoStatus = 1005;  // a close frame without a code
inline constexpr uint16_t kWsCloseInvalidPayload = 1007;
inline constexpr uint16_t kWsCloseTooBig = 1009;

// Whether a peer may send `code` in a close frame (RFC 6455 §7.4 and the
// IANA registry: 1012-1014 are registered since).
bool IsValidReceivedCloseCode(uint16_t code);

// Incremental UTF-8 validation (RFC 3629: no overlong forms, no surrogates,
// nothing above U+10FFFF). Fails at the first byte that cannot continue a
// valid sequence, so a split character is fine and a bad one fails early.
class Utf8Validator {
 public:
  // False once the bytes fed so far cannot be the start of valid UTF-8.
  bool Feed(const uint8_t* data, size_t size);
  bool Feed(std::string_view text) {
    return Feed(reinterpret_cast<const uint8_t*>(text.data()), text.size());
  }
  // The bytes fed so far end on a character boundary.
  bool Complete() const { return need_ == 0; }
  void Reset() { need_ = 0, lo_ = 0x80, hi_ = 0xBF; }

 private:
  uint8_t need_ = 0;               // continuation bytes still expected
  uint8_t lo_ = 0x80, hi_ = 0xBF;  // the range the next continuation byte must be in
};

bool IsValidUtf8(std::string_view text);

// Parses the frames a client sends, fed in chunks of any size.
class WsFrameParser {
 public:
  struct Event {
    enum Kind : uint8_t { kNeedMore, kText, kBinary, kPing, kPong, kClose, kError };
    Kind kind = kNeedMore;
    // kText/kBinary: the whole message; kPing/kPong: the payload; kClose: the
    // reason. Valid until the next call to Next().
    std::string_view payload;
    // kClose: the peer's code (kWsCloseNoStatus if it sent none); kError: the
    // code to close the connection with.
    uint16_t code = 0;
    const char* error = "";  // kError: what was wrong, short enough for a close reason
  };

  explicit WsFrameParser(size_t max_message_bytes)
      : max_message_bytes_(static_cast<uint32_t>(std::min<size_t>(max_message_bytes, UINT32_MAX))) {
  }

  // Parses data[0..size) until an event completes or the bytes run out;
  // `*used` tells how many were consumed (call again with the rest). A
  // payload lying whole in `data` is unmasked in place and returned without
  // a copy, so `data` must be writable scratch memory.
  Event Next(char* data, size_t size, size_t* used);

  // Bytes held for a frame or message not yet complete (0 between messages).
  size_t buffered_bytes() const { return Held(message_) + Held(control_); }
  bool failed() const { return stage_ == Stage::kFailed; }
  // Between frames, with no data message open: nothing partial is held.
  bool idle() const { return !in_message_ && stage_ == Stage::kHeader && header_len_ == 0; }

 private:
  enum class Stage : uint8_t { kHeader, kPayload, kFailed };

  static size_t Held(const std::unique_ptr<std::string>& s) {
    if (s == nullptr) return 0;
    return sizeof(std::string) + (s->capacity() > std::string().capacity() ? s->capacity() : 0);
  }

  Event Fail(uint16_t code, const char* why);
  // Checks the first two bytes of a head: nullptr if fine, else why not.
  const char* CheckFirstBytes() const;
  size_t HeaderSize() const;
  // The head is complete: checks the length, prepares for the payload.
  bool StartFrame(Event* error);
  // The frame's payload is all here; an event, or kNeedMore for a fragment.
  Event FinishFrame(std::string_view payload, bool buffered);
  void Unmask(char* data, size_t size);
  // Called at the start of Next(): drops what the previous event pointed to.
  void ReleaseDelivered();

  const uint32_t max_message_bytes_;
  Stage stage_ = Stage::kHeader;
  uint8_t header_[14];
  uint8_t header_len_ = 0;  // bytes of the head received
  uint8_t opcode_ = 0;      // of the current frame
  bool fin_ = false;
  bool in_message_ = false;  // a data message's first frame came without FIN
  bool text_ = false;        // the open message is text
  // The last event's payload lives in message_ / control_: dropped at the next call.
  bool release_message_ = false;
  bool release_control_ = false;
  bool payload_started_ = false;  // some of the current frame's payload was consumed
  uint8_t mask_[4] = {0, 0, 0, 0};
  uint8_t mask_pos_ = 0;
  uint64_t remaining_ = 0;      // of which still to come
  uint64_t message_bytes_ = 0;  // payload of the open message so far (announced)
  Utf8Validator utf8_;          // of the open text message
  // A message split across reads or fragments (none between messages).
  std::unique_ptr<std::string> message_;
  // A control frame's payload split across reads (rare: not kept inline).
  std::unique_ptr<std::string> control_;
};

// The largest server frame header: 2 bytes, then a 64-bit length.
inline constexpr size_t kWsMaxServerHeader = 10;

// Writes the header of an unmasked, unfragmented server frame carrying
// `payload_size` bytes into `out` (kWsMaxServerHeader bytes of room);
// returns its length: 2, 4 or 10.
size_t EncodeServerHeader(WsOpcode opcode, uint64_t payload_size, uint8_t* out);

// Appends a whole control frame (ping, pong, close) with `payload` (at most
// 125 bytes; longer is cut) to `out`.
void AppendControlFrame(WsOpcode opcode, std::string_view payload, std::string& out);

// Appends a close frame with `code` and `reason` (cut at 123 bytes, on a
// character boundary) to `out`.
void AppendCloseFrame(uint16_t code, std::string_view reason, std::string& out);

// Sec-WebSocket-Accept for a handshake's Sec-WebSocket-Key.
std::string WebSocketAccept(std::string_view key);

}  // namespace chat::edge

#endif  // CHAT_EDGE_WS_CODEC_H_
