#ifndef CHAT_STORE_SQL_MESSAGE_STORE_H_
#define CHAT_STORE_SQL_MESSAGE_STORE_H_

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "store/message_store.h"
#include "store/sql_db.h"

namespace chat::store {

// MessageStore on any SqlDb: the semantics live here once, the engines
// only run statements.
//
// Tables: store_meta(key, value) holds the epoch; streams(owner, last_useq,
// reached_useq) the per-user counter and reached mark; conversations(id,
// last_seq) the per-conversation counter; members(owner, conversation,
// peer, read_seq, delivered_seq) one row per user of a conversation (one
// for a self-conversation) with that user's marks, written when the
// conversation starts and when a mark moves, not per message (a database of
// the first version also has a last_useq there, no longer kept);
// messages(...) with both useqs, the idempotency key and the optional
// fields; stream_entries(owner, useq, message_id) each user's numbering.
//
// Lock order, the same in every transaction so that concurrent writers on
// PostgreSQL cannot deadlock: users rows by name, then conversations rows by
// id, then members rows by (owner, conversation).
class SqlMessageStore final : public MessageStore {
 public:
  // Creates the tables if missing and reads (or creates) the epoch.
  static absl::StatusOr<std::unique_ptr<MessageStore>> Create(std::unique_ptr<SqlDb> db);

  std::string Epoch() const override { return epoch_; }
  absl::StatusOr<std::vector<Committed>> Commit(const std::vector<NewMessage>& batch) override;
  absl::StatusOr<bool> HasUser(const std::string& user) override;
  absl::Status KnowUser(const std::string& user) override;
  absl::StatusOr<UserMarks> Marks(const std::string& user) override;
  absl::StatusOr<std::vector<UserMarks>> KnowAndReadMarks(
      const std::vector<std::string>& users) override;
  absl::StatusOr<SyncPage> Sync(const std::string& user, int64_t since, int limit,
                                size_t max_bytes) override;
  absl::StatusOr<SyncPage> Unread(const std::string& user, int64_t after, int limit,
                                  size_t max_bytes) override;
  absl::StatusOr<HistoryPage> History(const std::string& user, const std::string& peer,
                                      int64_t before, int limit, size_t max_bytes) override;
  absl::StatusOr<ConversationsPage> Conversations(const std::string& user, const std::string& after,
                                                  int limit, size_t max_bytes) override;
  absl::StatusOr<ReadResult> MarkRead(const std::string& user, const std::string& peer,
                                      int64_t seq) override;
  absl::StatusOr<std::vector<MarkChange>> AdvanceReached(const std::string& user,
                                                         int64_t useq) override;
  absl::StatusOr<std::vector<MarkChange>> AdvanceReachedMany(
      const std::vector<std::pair<std::string, int64_t>>& marks) override;
  absl::StatusOr<CommitResult> CommitAndAdvance(
      const std::vector<NewMessage>& batch,
      const std::vector<std::pair<std::string, int64_t>>& marks) override;
  absl::StatusOr<int64_t> PruneOlderThan(int64_t ts_ms, int limit) override;
  absl::StatusOr<int64_t> EraseUser(const std::string& user) override;

 private:
  explicit SqlMessageStore(std::unique_ptr<SqlDb> db) : db_(std::move(db)) {}
  absl::Status Init();
  // The body of Commit's transaction. On PostgreSQL it also locks the
  // streams rows of `reach`'s users (may be null), in the same name-ordered
  // pass as the counters' rows, for AdvanceReachedIn to follow in the same
  // transaction without breaking the lock order. A user whose row was not
  // there to lock is moved from `reach` to `unlocked`: locking it later, out
  // of order, could deadlock with a writer that creates it.
  absl::Status CommitIn(const std::vector<NewMessage>& batch, std::vector<Committed>& out,
                        std::map<std::string, int64_t>* reach = nullptr,
                        std::map<std::string, int64_t>* unlocked = nullptr);
  // The highest mark asked for per user; INVALID_ARGUMENT for an empty name.
  static absl::StatusOr<std::map<std::string, int64_t>> WantedMarks(
      const std::vector<std::pair<std::string, int64_t>>& marks);
  // The body of AdvanceReachedMany's transaction: `wanted` is the highest
  // mark asked for per user.
  absl::Status AdvanceReachedIn(const std::map<std::string, int64_t>& wanted,
                                std::vector<MarkChange>& changes);
  // Sync and Unread: `sql` selects the useq and the message columns.
  absl::StatusOr<SyncPage> StreamPage(const std::string& sql, const std::string& user,
                                      int64_t since, int limit, size_t max_bytes);

  std::unique_ptr<SqlDb> db_;
  std::string epoch_;
};

}  // namespace chat::store

#endif  // CHAT_STORE_SQL_MESSAGE_STORE_H_
