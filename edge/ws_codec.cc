#include "edge/ws_codec.h"

#include <algorithm>
#include <cstring>

#include "openssl/evp.h"
#include "openssl/sha.h"

namespace chat::edge {

namespace {

bool IsControl(uint8_t opcode) { return (opcode & 0x8) != 0; }

bool IsKnownOpcode(uint8_t opcode) {
  switch (static_cast<WsOpcode>(opcode)) {
    case WsOpcode::kContinuation:
    case WsOpcode::kText:
    case WsOpcode::kBinary:
    case WsOpcode::kClose:
    case WsOpcode::kPing:
    case WsOpcode::kPong:
      return true;
  }
  return false;
}

}  // namespace

bool IsValidReceivedCloseCode(uint16_t code) {
  if (code >= 3000 && code <= 4999) return true;  // libraries' and applications' own
  switch (code) {
    case 1000:  // normal
    case 1001:  // going away
    case 1002:  // protocol error
    case 1003:  // unsupported data
    case 1007:  // invalid payload
    case 1008:  // policy
    case 1009:  // too big
    case 1010:  // extension required
    case 1011:  // internal error
    case 1012:  // service restart
    case 1013:  // try again later
    case 1014:  // bad gateway
      return true;
    default:  // 1004, 1005, 1006, 1015 (reserved, never on the wire) and the rest
      return false;
  }
}

bool Utf8Validator::Feed(const uint8_t* data, size_t size) {
  size_t i = 0;
  while (i < size) {
    if (need_ == 0) {
      // ASCII runs are the common case: eight bytes at a time.
      while (i + 8 <= size) {
        uint64_t word;
        std::memcpy(&word, data + i, 8);
        if ((word & 0x8080808080808080ull) != 0) break;
        i += 8;
      }
      if (i == size) break;
      const uint8_t b = data[i++];
      if (b < 0x80) continue;
      lo_ = 0x80;
      hi_ = 0xBF;
      if (b >= 0xC2 && b <= 0xDF) {
        need_ = 1;
      } else if (b == 0xE0) {  // no overlong 3-byte forms
        need_ = 2;
        lo_ = 0xA0;
      } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
        need_ = 2;
      } else if (b == 0xED) {  // no surrogates (U+D800..U+DFFF)
        need_ = 2;
        hi_ = 0x9F;
      } else if (b == 0xF0) {  // no overlong 4-byte forms
        need_ = 3;
        lo_ = 0x90;
      } else if (b >= 0xF1 && b <= 0xF3) {
        need_ = 3;
      } else if (b == 0xF4) {  // nothing above U+10FFFF
        need_ = 3;
        hi_ = 0x8F;
      } else {  // a continuation byte, an overlong 2-byte lead (C0, C1), or F5..FF
        need_ = 0xFF;
        return false;
      }
    } else {
      if (need_ == 0xFF) return false;  // failed before
      const uint8_t b = data[i++];
      if (b < lo_ || b > hi_) {
        need_ = 0xFF;
        return false;
      }
      --need_;
      lo_ = 0x80;
      hi_ = 0xBF;
    }
  }
  return need_ != 0xFF;
}

bool IsValidUtf8(std::string_view text) {
  Utf8Validator v;
  return v.Feed(text) && v.Complete();
}

WsFrameParser::Event WsFrameParser::Fail(uint16_t code, const char* why) {
  stage_ = Stage::kFailed;
  message_.reset();
  control_.reset();
  Event event;
  event.kind = Event::kError;
  event.code = code;
  event.error = why;
  return event;
}

void WsFrameParser::ReleaseDelivered() {
  // Nothing is kept between messages: an idle connection holds no buffer.
  if (release_message_) message_.reset();
  if (release_control_) control_.reset();
  release_message_ = false;
  release_control_ = false;
}

const char* WsFrameParser::CheckFirstBytes() const {
  const uint8_t b0 = header_[0];
  const uint8_t b1 = header_[1];
  const bool fin = (b0 & 0x80) != 0;
  const uint8_t opcode = b0 & 0x0F;
  const uint8_t len7 = b1 & 0x7F;
  if ((b0 & 0x70) != 0) return "reserved bits set";
  if (!IsKnownOpcode(opcode)) return "unknown opcode";
  if (IsControl(opcode)) {
    if (!fin) return "fragmented control frame";
    if (len7 > 125) return "control frame too long";
    if (opcode == static_cast<uint8_t>(WsOpcode::kClose) && len7 == 1) {
      return "close frame of one byte";
    }
  } else if (opcode == static_cast<uint8_t>(WsOpcode::kContinuation)) {
    if (!in_message_) return "continuation without a message";
  } else if (in_message_) {
    return "new message inside a fragmented one";
  }
  if ((b1 & 0x80) == 0) return "unmasked client frame";
  return nullptr;
}

size_t WsFrameParser::HeaderSize() const {
  if (header_len_ < 2) return 2;
  const uint8_t len7 = header_[1] & 0x7F;
  return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
}

bool WsFrameParser::StartFrame(Event* error) {
  fin_ = (header_[0] & 0x80) != 0;
  opcode_ = header_[0] & 0x0F;
  const uint8_t len7 = header_[1] & 0x7F;
  uint64_t length = len7;
  size_t at = 2;
  if (len7 == 126) {
    length = (uint64_t{header_[2]} << 8) | header_[3];
    at = 4;
  } else if (len7 == 127) {
    if ((header_[2] & 0x80) != 0) {
      *error = Fail(kWsCloseProtocolError, "64-bit length with the high bit set");
      return false;
    }
    length = 0;
    for (size_t i = 2; i < 10; ++i) length = (length << 8) | header_[i];
    at = 10;
  }
  std::memcpy(mask_, header_ + at, 4);
  mask_pos_ = 0;
  if (!IsControl(opcode_)) {
    // Checked against the announced length: a too big message is refused
    // before any of its payload is read (or stored).
    if (length > max_message_bytes_ || message_bytes_ + length > max_message_bytes_) {
      *error = Fail(kWsCloseTooBig, "message too big");
      return false;
    }
    message_bytes_ += length;
    if (opcode_ != static_cast<uint8_t>(WsOpcode::kContinuation)) {
      text_ = opcode_ == static_cast<uint8_t>(WsOpcode::kText);
      utf8_.Reset();
    }
  }
  if (IsControl(opcode_)) control_.reset();
  payload_started_ = false;
  remaining_ = length;
  stage_ = Stage::kPayload;
  return true;
}

void WsFrameParser::Unmask(char* data, size_t size) {
  for (size_t i = 0; i < size; ++i) {
    data[i] = static_cast<char>(static_cast<uint8_t>(data[i]) ^ mask_[mask_pos_]);
    mask_pos_ = (mask_pos_ + 1) & 3;
  }
}

WsFrameParser::Event WsFrameParser::FinishFrame(std::string_view payload, bool buffered) {
  stage_ = Stage::kHeader;
  header_len_ = 0;
  Event event;
  event.payload = payload;
  switch (static_cast<WsOpcode>(opcode_)) {
    case WsOpcode::kPing:
      event.kind = Event::kPing;
      break;
    case WsOpcode::kPong:
      event.kind = Event::kPong;
      break;
    case WsOpcode::kClose:
      event.kind = Event::kClose;
      event.code = kWsCloseNoStatus;
      event.payload = {};
      if (payload.size() >= 2) {
        event.code = static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) |
                                           static_cast<uint8_t>(payload[1]));
        if (!IsValidReceivedCloseCode(event.code)) {
          return Fail(kWsCloseProtocolError, "invalid close code");
        }
        event.payload = payload.substr(2);
        if (!IsValidUtf8(event.payload)) {
          return Fail(kWsCloseInvalidPayload, "close reason is not UTF-8");
        }
      }
      break;
    default:  // a data frame
      if (!fin_) {
        in_message_ = true;
        return Event{};  // more fragments to come
      }
      if (text_ && !utf8_.Complete()) {
        return Fail(kWsCloseInvalidPayload, "text ends inside a UTF-8 sequence");
      }
      event.kind = text_ ? Event::kText : Event::kBinary;
      in_message_ = false;
      message_bytes_ = 0;
      utf8_.Reset();
      break;
  }
  // Whatever was held for this frame or message goes at the next call.
  if (IsControl(opcode_)) {
    release_control_ = buffered || control_ != nullptr;
  } else {
    release_message_ = buffered || message_ != nullptr;
  }
  return event;
}

WsFrameParser::Event WsFrameParser::Next(char* data, size_t size, size_t* used) {
  ReleaseDelivered();
  size_t pos = 0;
  if (stage_ == Stage::kFailed) {
    *used = size;
    return Event{};
  }
  while (true) {
    if (stage_ == Stage::kHeader) {
      // Up to 14 bytes, copied: a head may be split anywhere.
      while (header_len_ < HeaderSize()) {
        if (pos == size) {
          *used = pos;
          return Event{};
        }
        const size_t take = std::min(HeaderSize() - header_len_, size - pos);
        std::memcpy(header_ + header_len_, data + pos, take);
        header_len_ = static_cast<uint8_t>(header_len_ + take);
        pos += take;
        if (header_len_ == 2) {
          if (const char* why = CheckFirstBytes()) {
            *used = pos;
            return Fail(kWsCloseProtocolError, why);
          }
        }
      }
      Event error;
      if (!StartFrame(&error)) {
        *used = pos;
        return error;
      }
    }
    const bool control = IsControl(opcode_);
    const size_t available = size - pos;
    Event event;
    if (!payload_started_ && remaining_ <= available &&
        (control || (fin_ && (message_ == nullptr || message_->empty())))) {
      // The whole payload is in this chunk: unmasked where it lies.
      char* payload = data + pos;
      const size_t n = static_cast<size_t>(remaining_);
      Unmask(payload, n);
      if (!control && text_ && !utf8_.Feed(reinterpret_cast<const uint8_t*>(payload), n)) {
        *used = pos + n;
        return Fail(kWsCloseInvalidPayload, "invalid UTF-8 in text");
      }
      pos += n;
      remaining_ = 0;
      event = FinishFrame(std::string_view(payload, n), false);
    } else {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, available));
      char* chunk = data + pos;
      Unmask(chunk, n);
      pos += n;
      remaining_ -= n;
      payload_started_ = true;
      if (control) {
        if (control_ == nullptr) control_ = std::make_unique<std::string>();
        control_->append(chunk, n);
      } else {
        if (text_ && !utf8_.Feed(reinterpret_cast<const uint8_t*>(chunk), n)) {
          *used = pos;
          return Fail(kWsCloseInvalidPayload, "invalid UTF-8 in text");
        }
        if (message_ == nullptr) message_ = std::make_unique<std::string>();
        message_->append(chunk, n);
      }
      if (remaining_ > 0) {
        *used = pos;
        return Event{};
      }
      event = FinishFrame(std::string_view(control ? *control_ : *message_), true);
    }
    if (event.kind != Event::kNeedMore) {
      *used = pos;
      return event;
    }
    if (stage_ == Stage::kFailed) {
      *used = size;
      return event;
    }
  }
}

size_t EncodeServerHeader(WsOpcode opcode, uint64_t payload_size, uint8_t* out) {
  out[0] = static_cast<uint8_t>(0x80 | static_cast<uint8_t>(opcode));
  if (payload_size < 126) {
    out[1] = static_cast<uint8_t>(payload_size);
    return 2;
  }
  if (payload_size <= 0xFFFF) {
    out[1] = 126;
    out[2] = static_cast<uint8_t>(payload_size >> 8);
    out[3] = static_cast<uint8_t>(payload_size);
    return 4;
  }
  out[1] = 127;
  for (int i = 0; i < 8; ++i) out[2 + i] = static_cast<uint8_t>(payload_size >> (56 - 8 * i));
  return 10;
}

void AppendControlFrame(WsOpcode opcode, std::string_view payload, std::string& out) {
  payload = payload.substr(0, 125);
  uint8_t header[kWsMaxServerHeader];
  const size_t n = EncodeServerHeader(opcode, payload.size(), header);
  out.append(reinterpret_cast<const char*>(header), n);
  out.append(payload);
}

void AppendCloseFrame(uint16_t code, std::string_view reason, std::string& out) {
  size_t n = std::min<size_t>(reason.size(), 123);
  // Never cut a character in two: the reason must stay valid UTF-8.
  while (n > 0 && n < reason.size() && (static_cast<uint8_t>(reason[n]) & 0xC0) == 0x80) --n;
  std::string payload;
  payload.push_back(static_cast<char>(code >> 8));
  payload.push_back(static_cast<char>(code & 0xFF));
  payload.append(reason.substr(0, n));
  AppendControlFrame(WsOpcode::kClose, payload, out);
}

std::string WebSocketAccept(std::string_view key) {
  static constexpr char kGuid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  std::string input(key);
  input.append(kGuid);
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  unsigned char encoded[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
  const int n = EVP_EncodeBlock(encoded, digest, SHA_DIGEST_LENGTH);
  return std::string(reinterpret_cast<const char*>(encoded), static_cast<size_t>(n));
}

}  // namespace chat::edge
