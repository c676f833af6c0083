#ifndef CHAT_MESSAGE_SERVICE_ID_GENERATOR_H_
#define CHAT_MESSAGE_SERVICE_ID_GENERATOR_H_

#include <cstdint>
#include <string>

#include "absl/synchronization/mutex.h"

namespace chat::message {

// ULID-shaped ids (26 Crockford base32 characters: 48-bit millisecond time,
// 16-bit replica id, 64-bit sequence) that sort by time and stay unique across
// replicas: within one replica the sequence is monotonic even when the clock
// repeats or steps back, and it starts at a random point per process.
class IdGenerator {
 public:
  explicit IdGenerator(uint16_t replica_id);

  // `now_ms` is the message's receive time.
  std::string Next(int64_t now_ms);

  static constexpr size_t kLength = 26;

 private:
  const uint16_t replica_id_;
  absl::Mutex mu_;
  int64_t last_ms_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t sequence_ ABSL_GUARDED_BY(mu_);
};

}  // namespace chat::message

#endif  // CHAT_MESSAGE_SERVICE_ID_GENERATOR_H_
