#ifndef CHAT_STORE_MESSAGE_STORE_H_
#define CHAT_STORE_MESSAGE_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// The durable side of conversations: messages, their numbers and the marks
// kept on them. Two engines implement it (SQLite, the embedded default, and
// PostgreSQL for several message-service replicas); the same test suite runs
// against both. No transport types here.
//
// Numbers: a message belongs to the direct conversation of its two users and
// gets `seq`, its place in that conversation, and one `useq` per user, its
// place in that user's own stream (a message to yourself gets one). All are
// 1, 2, 3, ... without gaps, taken inside the committing transaction from
// counter rows locked in a fixed order, so concurrent writers (several
// replicas on one PostgreSQL) stay gapless.
//
// Not thread-safe: one thread (the store worker) owns a store object.
// Errors: UNAVAILABLE when the engine cannot be reached or fails (nothing of
// the failed call is kept), INVALID_ARGUMENT for bad input, NOT_FOUND for an
// unknown user where said.
namespace chat::store {

// A stored message as one user sees it: `useq` is that user's.
struct Message {
  std::string id;
  std::string conversation;
  int64_t seq = 0;
  int64_t useq = 0;
  std::string sent_by;
  std::string send_to;
  std::string text;
  int64_t ts_ms = 0;
  bool server = false;   // sent through the public gRPC API
  std::string type;      // optional payload type ("" = none)
  std::string metadata;  // optional JSON object text ("" = none)
};

struct NewMessage {
  std::string id;  // unique, from the IdGenerator
  std::string sent_by;
  std::string send_to;
  std::string text;
  int64_t ts_ms = 0;
  // Empty: none. Otherwise at most one message per (sent_by, key) is ever
  // stored while the first one is younger than 24 h (by its ts_ms).
  std::string idempotency_key;
  bool server = false;   // sent through the public gRPC API
  std::string type;      // optional payload type ("" = none)
  std::string metadata;  // optional JSON object text ("" = none)
};

struct Committed {
  Message for_sender;          // useq = the sender's
  int64_t recipient_useq = 0;  // == for_sender.useq for a message to yourself
  // The key was already used: nothing was stored, `for_sender` and
  // `recipient_useq` describe the first message.
  bool duplicate = false;
};

// One user's view of one conversation (protocol `conversations` item).
struct ConversationSummary {
  std::string with;
  std::string conversation;
  Message last;               // useq = the requesting user's
  int64_t unread = 0;         // peer's messages with seq > read_seq
  int64_t read_seq = 0;       // how far this user has read
  int64_t peer_read_seq = 0;  // how far the peer has read
  int64_t delivered_seq = 0;  // the peer's delivered mark: this user's messages reached the peer
};

struct SyncPage {
  std::vector<Message> messages;  // useq ascending, no gaps
  int64_t useq = 0;               // last included, or `since` when none
  bool more = false;
};

struct HistoryPage {
  std::string conversation;
  std::vector<Message> messages;  // seq ascending
  bool more = false;              // older ones exist
};

struct ConversationsPage {
  std::vector<ConversationSummary> items;  // by the user's useq of `last`, highest first
  // Empty when no further page; else the cursor for `after`: the decimal
  // useq of the last item's `last` (clients treat it as opaque).
  std::string next;
};

// A mark that moved, for receipts.
struct MarkChange {
  std::string conversation;
  std::string user;           // whose mark
  std::string peer;           // the other user of the conversation
  int64_t read_seq = 0;       // set for read marks
  int64_t delivered_seq = 0;  // set for delivered marks
};

struct UserMarks {
  int64_t last_useq = 0;     // highest useq of the user's stream (0: none)
  int64_t reached_useq = 0;  // prefix mark: every message up to it reached the user
};

// Deterministic, opaque id of the direct conversation of two users.
std::string ConversationId(const std::string& a, const std::string& b);

class MessageStore {
 public:
  virtual ~MessageStore() = default;

  // Random per database, created with it; changes when commits may be lost.
  virtual std::string Epoch() const = 0;

  // Commits every message in one transaction and returns one result per
  // input, in order. A whole-batch failure returns the status and stores
  // nothing. Both users become known (KnowUser) by the commit.
  virtual absl::StatusOr<std::vector<Committed>> Commit(const std::vector<NewMessage>& batch) = 0;

  // Users this store has a stream row for (created by Commit or KnowUser).
  virtual absl::StatusOr<bool> HasUser(const std::string& user) = 0;
  virtual absl::Status KnowUser(const std::string& user) = 0;
  virtual absl::StatusOr<UserMarks> Marks(const std::string& user) = 0;
  // KnowUser, then Marks, for every user of `users`, in one transaction:
  // one result per input, in order (a name may come more than once). A
  // failure, an invalid name among them included, keeps nothing.
  virtual absl::StatusOr<std::vector<UserMarks>> KnowAndReadMarks(
      const std::vector<std::string>& users) = 0;

  // The user's stream from `since` (exclusive), at most `limit` messages and
  // about `max_bytes` of text (always at least one message when one exists).
  virtual absl::StatusOr<SyncPage> Sync(const std::string& user, int64_t since, int limit,
                                        size_t max_bytes) = 0;
  // Messages *to* `user` with useq > after that are not covered by the
  // user's read mark of their conversation, oldest first: what a returning
  // user is pushed. `more` as in Sync.
  virtual absl::StatusOr<SyncPage> Unread(const std::string& user, int64_t after, int limit,
                                          size_t max_bytes) = 0;
  // `before` <= 0: from the newest. Messages with seq < before, the newest
  // `limit`, ascending.
  virtual absl::StatusOr<HistoryPage> History(const std::string& user, const std::string& peer,
                                              int64_t before, int limit, size_t max_bytes) = 0;
  virtual absl::StatusOr<ConversationsPage> Conversations(const std::string& user,
                                                          const std::string& after, int limit,
                                                          size_t max_bytes) = 0;

  // `user` has read the conversation with `peer` up to `seq` (clamped to the
  // last seq; lower than the current mark changes nothing). `read_seq` is the
  // mark as it now stands; `changes` holds the read mark if it moved and the
  // user's delivered mark if reading moved it too (read counts as reached).
  struct ReadResult {
    std::string conversation;
    int64_t read_seq = 0;
    std::vector<MarkChange> changes;
  };
  virtual absl::StatusOr<ReadResult> MarkRead(const std::string& user, const std::string& peer,
                                              int64_t seq) = 0;
  // Moves the user's reached prefix mark forward to `useq` (never back) and,
  // for every conversation where messages from the peer up to some seq now
  // all reached the user, the user's delivered mark there. Returns the
  // delivered marks that moved.
  virtual absl::StatusOr<std::vector<MarkChange>> AdvanceReached(const std::string& user,
                                                                 int64_t useq) = 0;
  // AdvanceReached for several users in one transaction (what a batch of
  // deliveries moved); the changes of all of them.
  virtual absl::StatusOr<std::vector<MarkChange>> AdvanceReachedMany(
      const std::vector<std::pair<std::string, int64_t>>& marks) = 0;

  // Commit and AdvanceReachedMany in one transaction: a batch of messages
  // and the reached marks that moved before it are stored together, or
  // (on failure) neither. A mark is clamped to the user's last useq after
  // the batch. Either input may be empty.
  struct CommitResult {
    std::vector<Committed> committed;  // Commit's, one per message
    std::vector<MarkChange> changes;   // AdvanceReachedMany's
  };
  virtual absl::StatusOr<CommitResult> CommitAndAdvance(
      const std::vector<NewMessage>& batch,
      const std::vector<std::pair<std::string, int64_t>>& marks) = 0;

  // Deletes messages older than `ts_ms`, at most `limit` of them per call;
  // returns how many were deleted. Counters and marks are kept.
  virtual absl::StatusOr<int64_t> PruneOlderThan(int64_t ts_ms, int limit) = 0;

  // Erases `user` for a data-protection request, in one transaction: every
  // message the user sent or received (the message rows with their
  // idempotency keys, and the stream entries of both sides), the user's
  // stream with its counter and reached mark, and every conversation with
  // the user: its counter and the marks of both users in it. Returns the
  // number of messages deleted; NOT_FOUND when the store does not know the
  // user (HasUser false).
  //
  // Other users keep their own numbers: a peer's useq has holes where the
  // erased messages were (Sync, Unread and History skip them), and the
  // conversation with the user leaves the peer's list. The name may be used
  // again afterwards and then starts afresh: a new stream from useq 1 and,
  // since nothing of the old conversations is kept (not even their
  // counters: their ids are made of the name), conversations from seq 1.
  virtual absl::StatusOr<int64_t> EraseUser(const std::string& user) = 0;
};

}  // namespace chat::store

#endif  // CHAT_STORE_MESSAGE_STORE_H_
