#include "message-service/id_generator.h"

#include <random>

namespace chat::message {
namespace {
constexpr char kAlphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
}

IdGenerator::IdGenerator(uint16_t replica_id) : replica_id_(replica_id) {
  std::random_device rd;
  sequence_ = (static_cast<uint64_t>(rd()) << 32) | rd();
}

std::string IdGenerator::Next(int64_t now_ms) {
  uint64_t ms;
  uint64_t seq;
  {
    absl::MutexLock lock(&mu_);
    // Never go back in time: a clock step backwards reuses the last timestamp
    // and the sequence keeps the order.
    if (now_ms > last_ms_) last_ms_ = now_ms;
    ms = static_cast<uint64_t>(last_ms_);
    seq = ++sequence_;
  }
  // 128 bits: [48 time][16 replica][64 sequence]; 26 base32 digits hold 130
  // bits, so the top digit carries only 3.
  const uint64_t hi = (ms << 16) | replica_id_;
  const uint64_t lo = seq;
  std::string out(kLength, '0');
  for (int i = static_cast<int>(kLength) - 1; i >= 0; --i) {
    const int bit = (static_cast<int>(kLength) - 1 - i) * 5;  // lowest bit of this digit
    uint32_t v;
    if (bit + 5 <= 64) {
      v = static_cast<uint32_t>(lo >> bit) & 31;
    } else if (bit < 64) {
      v = static_cast<uint32_t>((lo >> bit) | (hi << (64 - bit))) & 31;
    } else {
      v = static_cast<uint32_t>(hi >> (bit - 64)) & 31;
    }
    out[i] = kAlphabet[v];
  }
  return out;
}

}  // namespace chat::message
