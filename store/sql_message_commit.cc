// SqlMessageStore::Commit: numbering a batch of messages in one
// transaction, in at most three round trips on PostgreSQL (look up
// idempotency keys if any, take the numbers, write everything).
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "store/sql_message_rows.h"
#include "store/sql_message_store.h"

namespace chat::store {
namespace {

// Counters of one user (streams) or conversation: created when missing,
// `$2` added, the new last returned and the row locked until the commit.
constexpr char kBumpStream[] =
    "INSERT INTO streams (owner, last_useq) VALUES ($1, $2) ON CONFLICT (owner)"
    " DO UPDATE SET last_useq = streams.last_useq + excluded.last_useq RETURNING last_useq";
constexpr char kBumpConversation[] =
    "INSERT INTO conversations (id, last_seq) VALUES ($1, $2) ON CONFLICT (id)"
    " DO UPDATE SET last_seq = conversations.last_seq + excluded.last_seq RETURNING last_seq";

using SenderKey = std::pair<std::string, std::string>;  // (sent_by, idempotency key)

// Appends one row's values, each built in place (an initializer list would
// copy every string once more).
template <typename... Values>
void AddRow(std::vector<SqlParam>& rows, Values&&... values) {
  (rows.emplace_back(std::forward<Values>(values)), ...);
}

// NULL for "": optional bytes cost (almost) nothing when absent.
SqlParam OptionalBlob(const std::string& bytes) {
  return bytes.empty() ? SqlParam(nullptr) : SqlParam(Blob{bytes});
}

absl::Status CheckBatch(const std::vector<NewMessage>& batch) {
  for (const NewMessage& m : batch) {
    if (m.id.empty() || m.sent_by.empty() || m.send_to.empty()) {
      return absl::InvalidArgumentError("message without id, sender or recipient");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<Committed>> SqlMessageStore::Commit(
    const std::vector<NewMessage>& batch) {
  STORE_RETURN_IF_ERROR(CheckBatch(batch));
  std::vector<Committed> out;
  if (batch.empty()) return out;
  STORE_RETURN_IF_ERROR(
      db_->Transaction(SqlDb::Mode::kWrite, [&] { return CommitIn(batch, out); }));
  return out;
}

// One transaction instead of two: on SQLite a write transaction's fixed
// cost (its lock, the WAL write at COMMIT) is most of what moving a few
// marks costs, and the store worker saves the marks with every batch.
//
// On PostgreSQL both bodies lock streams rows, and taking the marks' ones
// after the commit's conversations rows would break the lock order of the
// class comment: two replicas could deadlock, and PostgreSQL finds that
// only after deadlock_timeout (1 s by default) before the retry. So
// CommitIn locks the marks' users' streams rows in its own name-ordered
// pass over the counters' rows, and AdvanceReachedIn then finds them held:
// the order stays streams, conversations, members. (The members rows that
// CommitIn inserts, before AdvanceReachedIn's updates of others, are those
// of conversations new in this transaction: no other transaction can hold
// them, since creating them takes the conversation's row first.) A user
// without a streams row when CommitIn ran had nothing to lock; their row may
// exist by the time AdvanceReachedIn looks (another writer created it), and
// locking it then, out of order, deadlocked with that writer (seen in
// PostgresConcurrencyTest). Such marks are saved in a transaction of their
// own after the commit (in practice a user with a reached mark has a row:
// they were delivered something).
absl::StatusOr<MessageStore::CommitResult> SqlMessageStore::CommitAndAdvance(
    const std::vector<NewMessage>& batch,
    const std::vector<std::pair<std::string, int64_t>>& marks) {
  STORE_RETURN_IF_ERROR(CheckBatch(batch));
  absl::StatusOr<std::map<std::string, int64_t>> wanted = WantedMarks(marks);
  if (!wanted.ok()) return wanted.status();
  CommitResult result;
  if (batch.empty() && wanted->empty()) return result;
  std::map<std::string, int64_t> unlocked;  // moved out of *wanted by CommitIn
  STORE_RETURN_IF_ERROR(db_->Transaction(SqlDb::Mode::kWrite, [&]() -> absl::Status {
    result.changes.clear();
    wanted->merge(unlocked);  // a retried transaction starts again from every mark
    if (!batch.empty()) {
      STORE_RETURN_IF_ERROR(CommitIn(batch, result.committed, &*wanted, &unlocked));
    }
    if (wanted->empty()) return absl::OkStatus();
    return AdvanceReachedIn(*wanted, result.changes);
  }));
  if (!unlocked.empty()) {
    std::vector<MarkChange> late;
    STORE_RETURN_IF_ERROR(
        db_->Transaction(SqlDb::Mode::kWrite, [&] { return AdvanceReachedIn(unlocked, late); }));
    result.changes.insert(result.changes.end(), std::make_move_iterator(late.begin()),
                          std::make_move_iterator(late.end()));
  }
  return result;
}

absl::Status SqlMessageStore::CommitIn(const std::vector<NewMessage>& batch,
                                       std::vector<Committed>& out,
                                       std::map<std::string, int64_t>* reach,
                                       std::map<std::string, int64_t>* unlocked) {
  out.clear();
  // 1. Keys already stored. Looked up before any counter is locked: a
  // concurrent writer that stores the same key first makes our insert fail
  // on the unique index, and the whole transaction is run again (PostgreSQL
  // retries unique violations), this time finding its message.
  std::map<SenderKey, size_t> lookup_of;
  std::vector<SqlStatement> lookups;
  for (const NewMessage& m : batch) {
    if (m.idempotency_key.empty()) continue;
    auto [it, added] = lookup_of.emplace(SenderKey{m.sent_by, m.idempotency_key}, lookups.size());
    if (!added) continue;
    lookups.push_back(
        {absl::StrCat("SELECT m.sender_useq, m.recipient_useq, ", sql::kMessageColumns,
                      " FROM messages m WHERE m.sent_by = $1 AND m.idem_key = $2"),
         {m.sent_by, Blob{m.idempotency_key}}});
  }
  absl::StatusOr<std::vector<SqlRows>> found = db_->RunAll(lookups);
  if (!found.ok()) return found.status();

  // 2. Which messages are stored. A duplicate answers with the message
  // holding its key: one already stored, or an earlier one of this batch.
  constexpr int kStored = -1;
  constexpr int kStoredHolder = -2;
  struct Holder {
    int index = kStoredHolder;  // in the batch, or kStoredHolder
    Committed stored;           // kStoredHolder's
    int64_t ts_ms = 0;
    std::string id;
  };
  std::map<SenderKey, Holder> holders;
  for (const auto& [key, index] : lookup_of) {
    const SqlRows& rows = (*found)[index];
    if (rows.empty()) continue;
    Holder h;
    h.stored = Committed{sql::ReadMessage(rows, 0, 2, rows.Int(0, 0)), rows.Int(0, 1), true};
    h.ts_ms = h.stored.for_sender.ts_ms;
    h.id = h.stored.for_sender.id;
    holders[key] = std::move(h);
  }
  // Per message: kStored, kStoredHolder (then duplicate_of holds it) or
  // the index of the batch's message it duplicates.
  std::vector<int> fate(batch.size(), kStored);
  std::vector<Committed> duplicate_of(batch.size());
  // A key whose message expired moves to the new message: stored ones
  // lose it first, ones of this batch are stored without it.
  std::vector<std::string> expired_ids;
  std::vector<bool> key_moved(batch.size(), false);
  // How many numbers each counter hands out; std::map: sorted, the lock
  // order of the class comment.
  std::map<std::string, int64_t> useq_count;
  std::map<std::string, int64_t> seq_count;
  for (size_t i = 0; i < batch.size(); ++i) {
    const NewMessage& m = batch[i];
    useq_count.emplace(m.sent_by, 0);
    useq_count.emplace(m.send_to, 0);
    if (!m.idempotency_key.empty()) {
      const SenderKey key{m.sent_by, m.idempotency_key};
      auto holder = holders.find(key);
      if (holder != holders.end()) {
        if (m.ts_ms - holder->second.ts_ms < sql::kIdempotencyWindowMs) {
          fate[i] = holder->second.index;
          if (fate[i] == kStoredHolder) duplicate_of[i] = holder->second.stored;
          continue;
        }
        if (holder->second.index == kStoredHolder) {
          expired_ids.push_back(holder->second.id);
        } else {
          key_moved[holder->second.index] = true;
        }
      }
      Holder h;
      h.index = static_cast<int>(i);
      h.ts_ms = m.ts_ms;
      h.id = m.id;
      holders[key] = std::move(h);
    }
    ++useq_count[m.sent_by];
    if (m.send_to != m.sent_by) ++useq_count[m.send_to];
    ++seq_count[ConversationId(m.sent_by, m.send_to)];
  }

  // 3. Take the numbers: one upsert per counter adds what the batch uses
  // and returns the new last, locking the row until the commit. The
  // streams rows of `reach` that no upsert locks are locked among them, in
  // name order (SQLite's write transaction needs no row locks).
  const bool lock_reach = reach != nullptr && db_->dialect() == SqlDb::Dialect::kPostgres;
  std::map<std::string, int64_t> streams = useq_count;  // owner -> count, -1: lock only
  if (lock_reach) {
    for (const auto& [owner, useq] : *reach) streams.emplace(owner, -1);
  }
  std::vector<SqlStatement> counters;
  std::vector<std::pair<std::string, size_t>> bumped;     // (owner, index in counters)
  std::vector<std::pair<std::string, size_t>> lock_only;  // (owner, index in counters)
  for (const auto& [owner, count] : streams) {
    if (count > 0) {
      bumped.emplace_back(owner, counters.size());
      counters.push_back({kBumpStream, {owner, count}});
      continue;
    }
    if (count == 0) {  // only duplicates: the user need only be known
      counters.push_back(
          {"INSERT INTO streams (owner) VALUES ($1) ON CONFLICT (owner) DO NOTHING", {owner}});
    }
    // A mark's row no upsert locks (DO NOTHING leaves an existing row as it is).
    if (lock_reach && reach->count(owner) > 0) {
      lock_only.emplace_back(owner, counters.size());
      counters.push_back(
          {absl::StrCat("SELECT 1 FROM streams WHERE owner = $1", db_->ForUpdate()), {owner}});
    }
  }
  const size_t first_conversation = counters.size();
  for (const auto& [id, count] : seq_count) counters.push_back({kBumpConversation, {id, count}});
  absl::StatusOr<std::vector<SqlRows>> taken = db_->RunAll(counters);
  if (!taken.ok()) return taken.status();
  for (const auto& [owner, index] : lock_only) {
    if (!(*taken)[index].empty()) continue;
    auto mark = reach->extract(owner);
    if (unlocked != nullptr) unlocked->insert(std::move(mark));
  }
  // The last number handed out so far, per counter.
  std::map<std::string, int64_t> useqs;
  std::map<std::string, int64_t> seqs;
  for (const auto& [owner, index] : bumped) {
    useqs[owner] = (*taken)[index].Int(0, 0) - useq_count[owner];
  }
  size_t next = first_conversation;
  for (const auto& [id, count] : seq_count) seqs[id] = (*taken)[next++].Int(0, 0) - count;

  // 4. Number the new messages and write everything, rows of a table
  // together in multi-row INSERTs.
  std::vector<SqlStatement> writes;
  for (const std::string& id : expired_ids) {
    writes.push_back({"UPDATE messages SET idem_key = NULL WHERE id = $1", {id}});
  }
  std::vector<SqlParam> message_rows;
  std::vector<SqlParam> entry_rows;
  message_rows.reserve(13 * batch.size());
  entry_rows.reserve(6 * batch.size());
  // The member rows of conversations new with this batch: (owner,
  // conversation) -> peer. Those of older ones exist (their first commit
  // wrote them) and hold only marks: the last message is the one at the
  // conversation's last seq, so no row changes per message.
  std::map<std::pair<std::string, std::string>, std::string> members;
  out.resize(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    const NewMessage& m = batch[i];
    if (fate[i] == kStoredHolder) {
      out[i] = duplicate_of[i];
      continue;
    }
    if (fate[i] >= 0) {
      out[i] = out[fate[i]];
      out[i].duplicate = true;
      continue;
    }
    const bool self = m.sent_by == m.send_to;
    Committed& c = out[i];
    c.for_sender.id = m.id;
    c.for_sender.conversation = ConversationId(m.sent_by, m.send_to);
    c.for_sender.seq = ++seqs[c.for_sender.conversation];
    c.for_sender.useq = ++useqs[m.sent_by];
    c.for_sender.sent_by = m.sent_by;
    c.for_sender.send_to = m.send_to;
    c.for_sender.text = m.text;
    c.for_sender.ts_ms = m.ts_ms;
    c.for_sender.server = m.server;
    c.for_sender.type = m.type;
    c.for_sender.metadata = m.metadata;
    c.recipient_useq = self ? c.for_sender.useq : ++useqs[m.send_to];
    AddRow(message_rows, m.id, c.for_sender.conversation, c.for_sender.seq, m.sent_by, m.send_to,
           c.for_sender.useq, c.recipient_useq, Blob{m.text}, m.ts_ms,
           OptionalBlob(key_moved[i] ? "" : m.idempotency_key), int64_t{m.server ? 1 : 0},
           OptionalBlob(m.type), OptionalBlob(m.metadata));
    AddRow(entry_rows, m.sent_by, c.for_sender.useq, m.id);
    if (!self) AddRow(entry_rows, m.send_to, c.recipient_useq, m.id);
    if (c.for_sender.seq == 1) {
      members[{m.sent_by, c.for_sender.conversation}] = m.send_to;
      members[{m.send_to, c.for_sender.conversation}] = m.sent_by;
    }
  }
  AppendInserts(
      "INSERT INTO messages (id, conversation, seq, sent_by, send_to, sender_useq,"
      " recipient_useq, body, ts_ms, idem_key, server, type, metadata)",
      13, std::move(message_rows), writes);
  AppendInserts("INSERT INTO stream_entries (owner, useq, message_id)", 3, std::move(entry_rows),
                writes);
  for (const auto& [owner_conversation, peer] : members) {
    writes.push_back(
        {"INSERT INTO members (owner, conversation, peer) VALUES ($1, $2, $3)"
         " ON CONFLICT (owner, conversation) DO NOTHING",
         {owner_conversation.first, owner_conversation.second, peer}});
  }
  return db_->RunAll(writes).status();
}

}  // namespace chat::store
