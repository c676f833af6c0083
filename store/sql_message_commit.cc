// SqlMessageStore::Commit: numbering a batch of messages in one
// transaction, in three round trips on PostgreSQL (lock the counters, look
// up idempotency keys, write everything).
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "store/sql_message_rows.h"
#include "store/sql_message_store.h"

namespace chat::store {
namespace {

// Counters of one user (streams) or conversation, created at 0 when
// missing and locked until the commit (an upsert that always updates locks
// the row in both engines).
constexpr char kLockStream[] =
    "INSERT INTO streams (owner) VALUES ($1) ON CONFLICT (owner)"
    " DO UPDATE SET last_useq = streams.last_useq RETURNING last_useq";
constexpr char kLockConversation[] =
    "INSERT INTO conversations (id) VALUES ($1) ON CONFLICT (id)"
    " DO UPDATE SET last_seq = conversations.last_seq RETURNING last_seq";

using SenderKey = std::pair<std::string, std::string>;  // (sent_by, idempotency key)

// NULL for "": optional bytes cost (almost) nothing when absent.
SqlParam OptionalBlob(const std::string& bytes) {
  return bytes.empty() ? SqlParam(nullptr) : SqlParam(Blob{bytes});
}

}  // namespace

absl::StatusOr<std::vector<Committed>> SqlMessageStore::Commit(
    const std::vector<NewMessage>& batch) {
  for (const NewMessage& m : batch) {
    if (m.id.empty() || m.sent_by.empty() || m.send_to.empty()) {
      return absl::InvalidArgumentError("message without id, sender or recipient");
    }
  }
  std::vector<Committed> out;
  if (batch.empty()) return out;
  STORE_RETURN_IF_ERROR(
      db_->Transaction(SqlDb::Mode::kWrite, [&] { return CommitIn(batch, out); }));
  return out;
}

absl::Status SqlMessageStore::CommitIn(const std::vector<NewMessage>& batch,
                                       std::vector<Committed>& out) {
  out.clear();
  // 1. Lock and read the counters. std::map: sorted, the lock order of the
  // class comment.
  std::map<std::string, int64_t> useqs;
  std::map<std::string, int64_t> seqs;
  for (const NewMessage& m : batch) {
    useqs[m.sent_by] = 0;
    useqs[m.send_to] = 0;
    seqs[ConversationId(m.sent_by, m.send_to)] = 0;
  }
  std::vector<SqlStatement> locks;
  for (const auto& [owner, last] : useqs) locks.push_back({kLockStream, {owner}});
  for (const auto& [id, last] : seqs) locks.push_back({kLockConversation, {id}});
  absl::StatusOr<std::vector<SqlRows>> counters = db_->RunAll(locks);
  if (!counters.ok()) return counters.status();
  size_t next = 0;
  for (auto& [owner, last] : useqs) last = (*counters)[next++].Int(0, 0);
  for (auto& [id, last] : seqs) last = (*counters)[next++].Int(0, 0);
  const std::map<std::string, int64_t> initial_useqs = useqs;
  const std::map<std::string, int64_t> initial_seqs = seqs;

  // 2. Keys already stored. Race-free: every message of a sender needs the
  // sender's streams row, locked above until the commit.
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
  // The message holding each key, as its duplicates report it.
  std::map<SenderKey, Committed> holders;
  for (const auto& [key, index] : lookup_of) {
    const SqlRows& rows = (*found)[index];
    if (rows.empty()) continue;
    holders[key] = Committed{sql::ReadMessage(rows, 0, 2, rows.Int(0, 0)), rows.Int(0, 1), true};
  }

  // 3. Number the new messages and write everything.
  std::vector<SqlStatement> writes;
  // (owner, conversation) -> (peer, owner's useq of the newest message).
  std::map<std::pair<std::string, std::string>, std::pair<std::string, int64_t>> members;
  for (const NewMessage& m : batch) {
    const SenderKey key{m.sent_by, m.idempotency_key};
    if (!m.idempotency_key.empty()) {
      auto holder = holders.find(key);
      if (holder != holders.end()) {
        if (m.ts_ms - holder->second.for_sender.ts_ms < sql::kIdempotencyWindowMs) {
          out.push_back(holder->second);
          continue;
        }
        // Expired: the key moves to the new message.
        writes.push_back(
            {"UPDATE messages SET idem_key = NULL WHERE id = $1", {holder->second.for_sender.id}});
      }
    }
    const bool self = m.sent_by == m.send_to;
    Committed c;
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
    const SqlParam stored_key = OptionalBlob(m.idempotency_key);
    writes.push_back(
        {"INSERT INTO messages (id, conversation, seq, sent_by, send_to, sender_useq,"
         " recipient_useq, body, ts_ms, idem_key, server, type, metadata)"
         " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
         {m.id, c.for_sender.conversation, c.for_sender.seq, m.sent_by, m.send_to,
          c.for_sender.useq, c.recipient_useq, Blob{m.text}, m.ts_ms, stored_key,
          int64_t{m.server ? 1 : 0}, OptionalBlob(m.type), OptionalBlob(m.metadata)}});
    const char* kEntry = "INSERT INTO stream_entries (owner, useq, message_id) VALUES ($1, $2, $3)";
    writes.push_back({kEntry, {m.sent_by, c.for_sender.useq, m.id}});
    if (!self) writes.push_back({kEntry, {m.send_to, c.recipient_useq, m.id}});
    members[{m.sent_by, c.for_sender.conversation}] = {m.send_to, c.for_sender.useq};
    members[{m.send_to, c.for_sender.conversation}] = {m.sent_by, c.recipient_useq};
    if (!m.idempotency_key.empty()) holders[key] = Committed{c.for_sender, c.recipient_useq, true};
    out.push_back(std::move(c));
  }
  for (const auto& [owner, last] : useqs) {
    if (last == initial_useqs.at(owner)) continue;
    writes.push_back({"UPDATE streams SET last_useq = $2 WHERE owner = $1", {owner, last}});
  }
  for (const auto& [id, last] : seqs) {
    if (last == initial_seqs.at(id)) continue;
    writes.push_back({"UPDATE conversations SET last_seq = $2 WHERE id = $1", {id, last}});
  }
  for (const auto& [owner_conversation, peer_useq] : members) {
    writes.push_back(
        {"INSERT INTO members (owner, conversation, peer, last_useq)"
         " VALUES ($1, $2, $3, $4) ON CONFLICT (owner, conversation)"
         " DO UPDATE SET last_useq = excluded.last_useq",
         {owner_conversation.first, owner_conversation.second, peer_useq.first, peer_useq.second}});
  }
  return db_->RunAll(writes).status();
}

}  // namespace chat::store
