#ifndef CHAT_TESTS_SUPPORT_FLAKY_MESSAGE_STORE_H_
#define CHAT_TESTS_SUPPORT_FLAKY_MESSAGE_STORE_H_

#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "store/message_store.h"

namespace chat::testing {

// A real message store that the test can make fail: while broken, every call
// answers UNAVAILABLE and reaches nothing, as an engine that went away would
// (the store's own contract: a failed call keeps nothing). Tests run as root
// in CI, where a read-only file does not fail, so failure is injected here.
// Break/Repair may be called from any thread.
class FlakyMessageStore : public store::MessageStore {
 public:
  explicit FlakyMessageStore(std::unique_ptr<store::MessageStore> real) : real_(std::move(real)) {}

  void Break() { broken_ = true; }
  void Repair() { broken_ = false; }
  // Calls answered UNAVAILABLE so far.
  int failed_calls() const { return failed_calls_; }

  std::string Epoch() const override { return real_->Epoch(); }
  absl::StatusOr<std::vector<store::Committed>> Commit(
      const std::vector<store::NewMessage>& batch) override {
    if (absl::Status s = Check(); !s.ok()) return s;
    return real_->Commit(batch);
  }
  absl::StatusOr<bool> HasUser(const std::string& user) override {
    if (absl::Status s = Check(); !s.ok()) return s;
    return real_->HasUser(user);
  }
  absl::Status KnowUser(const std::string& user) override {
    if (absl::Status s = Check(); !s.ok()) return s;
    return real_->KnowUser(user);
  }
  absl::StatusOr<store::UserMarks> Marks(const std::string& user) override {
    if (absl::Status s = Check(); !s.ok()) return s;
    return real_->Marks(user);
  }
  absl::StatusOr<std::vector<store::UserMarks>> KnowAndReadMarks(
      const std::vector<std::string>& users) override {
    if (absl::Status s = Check(); !s.ok()) return s;
    return real_->KnowAndReadMarks(users);
  }
  absl::StatusOr<store::SyncPage> Sync(const std::string& user, int64_t since, int limit,
                                       size_t max_bytes) override {
    if (absl::Status s = Check(); !s.ok()) return s;
    return real_->Sync(user, since, limit, max_bytes);
  }
  absl::StatusOr<store::SyncPage> Unread(const std::string& user, int64_t after, int limit,
                                         size_t max_bytes) override {
    if (absl::Status s = Check(); !s.ok()) return s;
    return real_->Unread(user, after, limit, max_bytes);
  }
  absl::StatusOr<store::HistoryPage> History(const std::string& user, const std::string& peer,
                                             int64_t before, int limit, size_t max_bytes) override {
    if (absl::Status s = Check(); !s.ok()) return s;
    return real_->History(user, peer, before, limit, max_bytes);
  }
  absl::StatusOr<store::ConversationsPage> Conversations(const std::string& user,
                                                         const std::string& after, int limit,
                                                         size_t max_bytes) override {
    if (absl::Status s = Check(); !s.ok()) return s;
    return real_->Conversations(user, after, limit, max_bytes);
  }
  absl::StatusOr<ReadResult> MarkRead(const std::string& user, const std::string& peer,
                                      int64_t seq) override {
    if (absl::Status s = Check(); !s.ok()) return s;
    return real_->MarkRead(user, peer, seq);
  }
  absl::StatusOr<std::vector<store::MarkChange>> AdvanceReached(const std::string& user,
                                                                int64_t useq) override {
    if (absl::Status s = Check(); !s.ok()) return s;
    return real_->AdvanceReached(user, useq);
  }
  absl::StatusOr<std::vector<store::MarkChange>> AdvanceReachedMany(
      const std::vector<std::pair<std::string, int64_t>>& marks) override {
    if (absl::Status s = Check(); !s.ok()) return s;
    return real_->AdvanceReachedMany(marks);
  }
  absl::StatusOr<CommitResult> CommitAndAdvance(
      const std::vector<store::NewMessage>& batch,
      const std::vector<std::pair<std::string, int64_t>>& marks) override {
    if (absl::Status s = Check(); !s.ok()) return s;
    return real_->CommitAndAdvance(batch, marks);
  }
  absl::StatusOr<int64_t> PruneOlderThan(int64_t ts_ms, int limit) override {
    if (absl::Status s = Check(); !s.ok()) return s;
    return real_->PruneOlderThan(ts_ms, limit);
  }
  absl::StatusOr<int64_t> EraseUser(const std::string& user) override {
    if (absl::Status s = Check(); !s.ok()) return s;
    return real_->EraseUser(user);
  }

 private:
  absl::Status Check() {
    if (!broken_) return absl::OkStatus();
    ++failed_calls_;
    return absl::UnavailableError("test: the store is broken");
  }

  const std::unique_ptr<store::MessageStore> real_;
  std::atomic<bool> broken_{false};
  std::atomic<int> failed_calls_{0};
};

}  // namespace chat::testing

#endif  // CHAT_TESTS_SUPPORT_FLAKY_MESSAGE_STORE_H_
