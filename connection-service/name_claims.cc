#include "connection-service/name_claims.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/names.h"

namespace chat::connection {

absl::StatusOr<std::string> MemoryNameOwners::ClaimName(const std::string& name,
                                                        const std::string& subject, int64_t) {
  return owners_.try_emplace(name, subject).first->second;
}

absl::Status MemoryNameOwners::ReleaseName(const std::string& name) {
  owners_.erase(name);
  return absl::OkStatus();
}

absl::Status NameClaims::Release(const std::string& name) {
  absl::MutexLock lock(&mu_);
  return store_->ReleaseName(name);
}

absl::StatusOr<bool> NameClaims::Claim(const std::string& name, const std::string& subject) {
  if (absl::Status s = ValidateUserName(name); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("name: ", s.message()));
  }
  if (subject.empty() || subject.size() > kMaxSubjectBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("subject must be 1..", kMaxSubjectBytes, " bytes"));
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<std::string> owner = store_->ClaimName(name, subject, clock_->NowMs());
  if (!owner.ok()) return owner.status();
  return *owner == subject;
}

}  // namespace chat::connection
