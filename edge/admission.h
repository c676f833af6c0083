#ifndef CHAT_EDGE_ADMISSION_H_
#define CHAT_EDGE_ADMISSION_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace chat::edge {

// Browser Origin check for handshakes (cross-site WebSocket hijacking).
// `allowed` holds exact origins ("https://chat.example.com"); "*" allows any.
// Requests without an Origin header are not from a browser page and pass.
class OriginPolicy {
 public:
  explicit OriginPolicy(std::vector<std::string> allowed) : allowed_(std::move(allowed)) {}
  bool Allows(std::string_view origin) const;

 private:
  std::vector<std::string> allowed_;
};

// Live connections per user on this edge, reserved at the handshake.
class UserConnectionLimit {
 public:
  explicit UserConnectionLimit(int max_per_user) : max_(max_per_user) {}
  // ResourceExhausted when the user already holds the maximum.
  absl::Status Reserve(const std::string& user);
  void Release(const std::string& user);

 private:
  const int max_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, int> counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_ADMISSION_H_
