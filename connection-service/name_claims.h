#ifndef CHAT_CONNECTION_SERVICE_NAME_CLAIMS_H_
#define CHAT_CONNECTION_SERVICE_NAME_CLAIMS_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "store/user_store.h"

namespace chat::connection {

// Where name owners are kept. The same call as chat::store::UserStore's
// ClaimName, so the durable user store plugs in unchanged. Not thread-safe:
// NameClaims serialises.
class NameOwnerStore {
 public:
  virtual ~NameOwnerStore() = default;
  // Binds `name` to `subject` unless another subject holds it; returns the
  // owner afterwards.
  virtual absl::StatusOr<std::string> ClaimName(const std::string& name, const std::string& subject,
                                                int64_t now_ms) = 0;
  // Forgets who owns `name` (the user was erased).
  virtual absl::Status ReleaseName(const std::string& name) = 0;
};

// In memory: claims last as long as the process.
class MemoryNameOwners final : public NameOwnerStore {
 public:
  absl::StatusOr<std::string> ClaimName(const std::string& name, const std::string& subject,
                                        int64_t now_ms) override;
  absl::Status ReleaseName(const std::string& name) override;

 private:
  absl::flat_hash_map<std::string, std::string> owners_;
};

// The durable user store's claims (chat::store::UserStore::ClaimName). It
// owns its store: give it a connection of its own (OpenUserStore again with
// the same URL) so that NameClaims' lock is all the serialising it needs; the
// engine arbitrates between this connection and the registry's.
class UserStoreNameOwners final : public NameOwnerStore {
 public:
  explicit UserStoreNameOwners(std::unique_ptr<store::UserStore> store)
      : store_(std::move(store)) {}
  absl::StatusOr<std::string> ClaimName(const std::string& name, const std::string& subject,
                                        int64_t now_ms) override {
    return store_->ClaimName(name, subject, now_ms);
  }
  // Nothing to do: claims live with the users, and the registry's
  // UserStore::DeleteUser (same database) erased the claim with the user.
  // Deleting again from this connection could erase a user who came back
  // in between.
  absl::Status ReleaseName(const std::string&) override { return absl::OkStatus(); }

 private:
  std::unique_ptr<store::UserStore> store_;
};

// The first identity-provider subject to claim a user name owns it; the
// same subject may claim it again, any other is refused. Display names are
// editable by their users, so this is what stops a second account from
// renaming itself "alice" and speaking as alice. Thread-safe.
class NameClaims {
 public:
  NameClaims(std::unique_ptr<NameOwnerStore> store, const Clock* clock)
      : store_(std::move(store)), clock_(clock) {}

  // true: `subject` owns `name`. InvalidArgument for a name that is not a
  // valid user name or an empty or oversized subject; the store's errors.
  absl::StatusOr<bool> Claim(const std::string& name, const std::string& subject);
  // The user was erased: the next subject to claim `name` gets it.
  absl::Status Release(const std::string& name);

  static constexpr size_t kMaxSubjectBytes = 256;

 private:
  absl::Mutex mu_;
  const std::unique_ptr<NameOwnerStore> store_ ABSL_PT_GUARDED_BY(mu_);
  const Clock* const clock_;
};

}  // namespace chat::connection

#endif  // CHAT_CONNECTION_SERVICE_NAME_CLAIMS_H_
