#include "edge/admission.h"

#include "absl/strings/str_cat.h"

namespace chat::edge {

bool OriginPolicy::Allows(std::string_view origin) const {
  if (origin.empty()) return true;
  for (const auto& a : allowed_) {
    if (a == "*" || a == origin) return true;
  }
  return false;
}

absl::Status UserConnectionLimit::Reserve(const std::string& user) {
  absl::MutexLock lock(&mu_);
  int& count = counts_[user];
  if (count >= max_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("user already has ", count, " connections on this edge (the maximum)"));
  }
  ++count;
  return absl::OkStatus();
}

void UserConnectionLimit::Release(const std::string& user) {
  absl::MutexLock lock(&mu_);
  auto it = counts_.find(user);
  if (it == counts_.end()) return;
  if (--it->second <= 0) counts_.erase(it);
}

}  // namespace chat::edge
