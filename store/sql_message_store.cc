#include "store/sql_message_store.h"

#include <algorithm>
#include <map>
#include <random>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "store/sql_message_rows.h"

namespace chat::store {
namespace {

using Mode = SqlDb::Mode;

// Named so that they cannot clash with the user store's tables when both
// live in one PostgreSQL database.
std::string Schema(const SqlDb& db) {
  const std::string blob = db.BlobType();
  return absl::StrCat(
      "CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
      "CREATE TABLE IF NOT EXISTS streams (owner TEXT PRIMARY KEY,"
      " last_useq BIGINT NOT NULL DEFAULT 0, reached_useq BIGINT NOT NULL DEFAULT 0);"
      "CREATE TABLE IF NOT EXISTS conversations (id TEXT PRIMARY KEY,"
      " last_seq BIGINT NOT NULL DEFAULT 0);"
      "CREATE TABLE IF NOT EXISTS members (owner TEXT NOT NULL, conversation TEXT NOT NULL,"
      " peer TEXT NOT NULL, last_useq BIGINT NOT NULL DEFAULT 0,"
      " read_seq BIGINT NOT NULL DEFAULT 0, delivered_seq BIGINT NOT NULL DEFAULT 0,"
      " PRIMARY KEY (owner, conversation));"
      "CREATE INDEX IF NOT EXISTS members_by_last ON members (owner, last_useq);"
      "CREATE TABLE IF NOT EXISTS messages (id TEXT PRIMARY KEY, conversation TEXT NOT NULL,"
      " seq BIGINT NOT NULL, sent_by TEXT NOT NULL, send_to TEXT NOT NULL,"
      " sender_useq BIGINT NOT NULL, recipient_useq BIGINT NOT NULL, body ",
      blob, " NOT NULL, ts_ms BIGINT NOT NULL, idem_key ", blob,
      ", UNIQUE (conversation, seq));"
      "CREATE UNIQUE INDEX IF NOT EXISTS messages_idem ON messages (sent_by, idem_key)"
      " WHERE idem_key IS NOT NULL;"
      "CREATE INDEX IF NOT EXISTS messages_by_ts ON messages (ts_ms);"
      "CREATE TABLE IF NOT EXISTS stream_entries (owner TEXT NOT NULL, useq BIGINT NOT NULL,"
      " message_id TEXT NOT NULL, PRIMARY KEY (owner, useq));");
}

std::string RandomEpoch() {
  std::random_device random;
  std::string epoch;
  for (int i = 0; i < 4; ++i) {
    char part[9];
    snprintf(part, sizeof(part), "%08x", static_cast<unsigned>(random()));
    epoch += part;
  }
  return epoch;
}

absl::Status CheckUser(const std::string& user) {
  return user.empty() ? absl::InvalidArgumentError("empty user name") : absl::OkStatus();
}

// Counter of one user (streams) or conversation, created at 0 when missing
// and locked until the commit (an upsert that always updates locks the row
// in both engines).
absl::StatusOr<int64_t> LockCounter(SqlDb& db, const char* sql, const std::string& key) {
  absl::StatusOr<SqlRows> rows = db.Run(sql, {key});
  if (!rows.ok()) return rows.status();
  return rows->Int(0, 0);
}

constexpr char kLockStream[] =
    "INSERT INTO streams (owner) VALUES ($1) ON CONFLICT (owner)"
    " DO UPDATE SET last_useq = streams.last_useq RETURNING last_useq";
constexpr char kLockConversation[] =
    "INSERT INTO conversations (id) VALUES ($1) ON CONFLICT (id)"
    " DO UPDATE SET last_seq = conversations.last_seq RETURNING last_seq";

}  // namespace

absl::StatusOr<std::unique_ptr<MessageStore>> SqlMessageStore::Create(std::unique_ptr<SqlDb> db) {
  std::unique_ptr<SqlMessageStore> store(new SqlMessageStore(std::move(db)));
  STORE_RETURN_IF_ERROR(store->Init());
  return std::unique_ptr<MessageStore>(std::move(store));
}

absl::Status SqlMessageStore::Init() {
  return db_->Transaction(Mode::kWrite, [&]() -> absl::Status {
    if (db_->dialect() == SqlDb::Dialect::kPostgres) {
      // Replicas starting together would race on CREATE ... IF NOT EXISTS.
      STORE_RETURN_IF_ERROR(db_->Run("SELECT pg_advisory_xact_lock(7270001)", {}).status());
    }
    STORE_RETURN_IF_ERROR(db_->Execute(Schema(*db_)));
    STORE_RETURN_IF_ERROR(db_->Run("INSERT INTO store_meta (key, value) VALUES ('epoch', $1)"
                                   " ON CONFLICT (key) DO NOTHING",
                                   {RandomEpoch()})
                              .status());
    absl::StatusOr<SqlRows> rows = db_->Run("SELECT value FROM store_meta WHERE key = 'epoch'", {});
    if (!rows.ok()) return rows.status();
    epoch_ = rows->Text(0, 0);
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<Committed>> SqlMessageStore::Commit(
    const std::vector<NewMessage>& batch) {
  for (const NewMessage& m : batch) {
    if (m.id.empty() || m.sent_by.empty() || m.send_to.empty()) {
      return absl::InvalidArgumentError("message without id, sender or recipient");
    }
  }
  std::vector<Committed> out;
  if (batch.empty()) return out;
  STORE_RETURN_IF_ERROR(db_->Transaction(Mode::kWrite, [&] { return CommitIn(batch, out); }));
  return out;
}

absl::Status SqlMessageStore::CommitIn(const std::vector<NewMessage>& batch,
                                       std::vector<Committed>& out) {
  out.clear();
  // std::map: locked in sorted order (see the class comment).
  std::map<std::string, int64_t> useqs;
  std::map<std::string, int64_t> seqs;
  for (const NewMessage& m : batch) {
    useqs[m.sent_by] = 0;
    useqs[m.send_to] = 0;
    seqs[ConversationId(m.sent_by, m.send_to)] = 0;
  }
  for (auto& [owner, last] : useqs) {
    absl::StatusOr<int64_t> v = LockCounter(*db_, kLockStream, owner);
    if (!v.ok()) return v.status();
    last = *v;
  }
  for (auto& [id, last] : seqs) {
    absl::StatusOr<int64_t> v = LockCounter(*db_, kLockConversation, id);
    if (!v.ok()) return v.status();
    last = *v;
  }
  const std::map<std::string, int64_t> initial_useqs = useqs;
  const std::map<std::string, int64_t> initial_seqs = seqs;
  // (owner, conversation) -> (peer, owner's useq of the newest message).
  std::map<std::pair<std::string, std::string>, std::pair<std::string, int64_t>> members;

  for (const NewMessage& m : batch) {
    if (!m.idempotency_key.empty()) {
      // Race-free: every message of sent_by needs its streams row, which
      // this transaction holds.
      absl::StatusOr<SqlRows> first =
          db_->Run(absl::StrCat("SELECT m.sender_useq, m.recipient_useq, ", sql::kMessageColumns,
                                " FROM messages m WHERE m.sent_by = $1 AND m.idem_key = $2"),
                   {m.sent_by, Blob{m.idempotency_key}});
      if (!first.ok()) return first.status();
      if (!first->empty()) {
        Message stored = sql::ReadMessage(*first, 0, 2, first->Int(0, 0));
        if (m.ts_ms - stored.ts_ms < sql::kIdempotencyWindowMs) {
          out.push_back(Committed{std::move(stored), first->Int(0, 1), true});
          continue;
        }
        // Expired: the key moves to the new message.
        STORE_RETURN_IF_ERROR(
            db_->Run("UPDATE messages SET idem_key = NULL WHERE id = $1", {stored.id}).status());
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
    c.recipient_useq = self ? c.for_sender.useq : ++useqs[m.send_to];
    SqlParam key = m.idempotency_key.empty() ? SqlParam(nullptr) : Blob{m.idempotency_key};
    STORE_RETURN_IF_ERROR(
        db_->Run("INSERT INTO messages (id, conversation, seq, sent_by, send_to, sender_useq,"
                 " recipient_useq, body, ts_ms, idem_key)"
                 " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                 {m.id, c.for_sender.conversation, c.for_sender.seq, m.sent_by, m.send_to,
                  c.for_sender.useq, c.recipient_useq, Blob{m.text}, m.ts_ms, key})
            .status());
    const char* kEntry = "INSERT INTO stream_entries (owner, useq, message_id) VALUES ($1, $2, $3)";
    STORE_RETURN_IF_ERROR(db_->Run(kEntry, {m.sent_by, c.for_sender.useq, m.id}).status());
    if (!self) {
      STORE_RETURN_IF_ERROR(db_->Run(kEntry, {m.send_to, c.recipient_useq, m.id}).status());
    }
    members[{m.sent_by, c.for_sender.conversation}] = {m.send_to, c.for_sender.useq};
    members[{m.send_to, c.for_sender.conversation}] = {m.sent_by, c.recipient_useq};
    out.push_back(std::move(c));
  }

  for (const auto& [owner, last] : useqs) {
    if (last == initial_useqs.at(owner)) continue;
    STORE_RETURN_IF_ERROR(
        db_->Run("UPDATE streams SET last_useq = $2 WHERE owner = $1", {owner, last}).status());
  }
  for (const auto& [id, last] : seqs) {
    if (last == initial_seqs.at(id)) continue;
    STORE_RETURN_IF_ERROR(
        db_->Run("UPDATE conversations SET last_seq = $2 WHERE id = $1", {id, last}).status());
  }
  for (const auto& [key, value] : members) {
    STORE_RETURN_IF_ERROR(db_->Run("INSERT INTO members (owner, conversation, peer, last_useq)"
                                   " VALUES ($1, $2, $3, $4) ON CONFLICT (owner, conversation)"
                                   " DO UPDATE SET last_useq = excluded.last_useq",
                                   {key.first, key.second, value.first, value.second})
                              .status());
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> SqlMessageStore::HasUser(const std::string& user) {
  STORE_RETURN_IF_ERROR(CheckUser(user));
  bool found = false;
  STORE_RETURN_IF_ERROR(db_->Transaction(Mode::kRead, [&]() -> absl::Status {
    absl::StatusOr<SqlRows> rows = db_->Run("SELECT 1 FROM streams WHERE owner = $1", {user});
    if (!rows.ok()) return rows.status();
    found = !rows->empty();
    return absl::OkStatus();
  }));
  return found;
}

absl::Status SqlMessageStore::KnowUser(const std::string& user) {
  STORE_RETURN_IF_ERROR(CheckUser(user));
  return db_->Transaction(Mode::kWrite, [&] {
    return db_
        ->Run("INSERT INTO streams (owner) VALUES ($1) ON CONFLICT (owner) DO NOTHING", {user})
        .status();
  });
}

absl::StatusOr<UserMarks> SqlMessageStore::Marks(const std::string& user) {
  STORE_RETURN_IF_ERROR(CheckUser(user));
  UserMarks marks;
  STORE_RETURN_IF_ERROR(db_->Transaction(Mode::kRead, [&]() -> absl::Status {
    absl::StatusOr<SqlRows> rows =
        db_->Run("SELECT last_useq, reached_useq FROM streams WHERE owner = $1", {user});
    if (!rows.ok()) return rows.status();
    marks = UserMarks{};
    if (!rows->empty()) marks = UserMarks{rows->Int(0, 0), rows->Int(0, 1)};
    return absl::OkStatus();
  }));
  return marks;
}

absl::StatusOr<MessageStore::ReadResult> SqlMessageStore::MarkRead(const std::string& user,
                                                                   const std::string& peer,
                                                                   int64_t seq) {
  STORE_RETURN_IF_ERROR(CheckUser(user));
  STORE_RETURN_IF_ERROR(CheckUser(peer));
  if (seq < 0) return absl::InvalidArgumentError("negative read seq");
  ReadResult result;
  result.conversation = ConversationId(user, peer);
  const std::string& conversation = result.conversation;
  STORE_RETURN_IF_ERROR(db_->Transaction(Mode::kWrite, [&]() -> absl::Status {
    result.read_seq = 0;
    result.changes.clear();
    absl::StatusOr<SqlRows> conv =
        db_->Run(absl::StrCat("SELECT last_seq FROM conversations WHERE id = $1", db_->ForUpdate()),
                 {conversation});
    if (!conv.ok()) return conv.status();
    if (conv->empty()) return absl::OkStatus();  // never written: nothing to read
    const int64_t last = conv->Int(0, 0);
    if (user == peer) {  // a self-conversation is always read
      result.read_seq = last;
      return absl::OkStatus();
    }
    absl::StatusOr<SqlRows> mine = db_->Run(
        "SELECT read_seq, delivered_seq FROM members WHERE owner = $1 AND conversation = $2",
        {user, conversation});
    if (!mine.ok()) return mine.status();
    if (mine->empty()) return absl::InternalError("conversation without its member row");
    int64_t read = mine->Int(0, 0);
    const int64_t delivered = mine->Int(0, 1);
    if (std::min(seq, last) > read) {
      read = std::min(seq, last);
      STORE_RETURN_IF_ERROR(db_->Run("UPDATE members SET read_seq = $3"
                                     " WHERE owner = $1 AND conversation = $2",
                                     {user, conversation, read})
                                .status());
      result.changes.push_back(MarkChange{conversation, user, peer, read, 0});
    }
    result.read_seq = read;
    // Reading counts as reaching: the peer's messages up to the mark.
    absl::StatusOr<SqlRows> top = db_->Run(
        "SELECT MAX(seq) FROM messages WHERE conversation = $1 AND sent_by = $2 AND seq <= $3",
        {conversation, peer, read});
    if (!top.ok()) return top.status();
    const int64_t reached = top->Int(0, 0);
    if (reached > delivered) {
      STORE_RETURN_IF_ERROR(db_->Run("UPDATE members SET delivered_seq = $3"
                                     " WHERE owner = $1 AND conversation = $2",
                                     {user, conversation, reached})
                                .status());
      result.changes.push_back(MarkChange{conversation, user, peer, 0, reached});
    }
    return absl::OkStatus();
  }));
  return result;
}

absl::StatusOr<std::vector<MarkChange>> SqlMessageStore::AdvanceReached(const std::string& user,
                                                                        int64_t useq) {
  STORE_RETURN_IF_ERROR(CheckUser(user));
  std::vector<MarkChange> changes;
  STORE_RETURN_IF_ERROR(db_->Transaction(Mode::kWrite, [&]() -> absl::Status {
    changes.clear();
    absl::StatusOr<SqlRows> marks =
        db_->Run(absl::StrCat("SELECT last_useq, reached_useq FROM streams WHERE owner = $1",
                              db_->ForUpdate()),
                 {user});
    if (!marks.ok()) return marks.status();
    if (marks->empty()) return absl::OkStatus();
    const int64_t old = marks->Int(0, 1);
    const int64_t target = std::min(useq, marks->Int(0, 0));
    if (target <= old) return absl::OkStatus();
    STORE_RETURN_IF_ERROR(
        db_->Run("UPDATE streams SET reached_useq = $2 WHERE owner = $1", {user, target}).status());
    // Within a conversation seq and the recipient's useq grow together, so
    // the newest peer message in the newly reached range has every earlier
    // one of that peer reached too.
    absl::StatusOr<SqlRows> tops = db_->Run(
        "SELECT m.conversation, m.sent_by, MAX(m.seq) FROM stream_entries s"
        " JOIN messages m ON m.id = s.message_id"
        " WHERE s.owner = $1 AND s.useq > $2 AND s.useq <= $3"
        " AND m.send_to = $1 AND m.sent_by <> $1 GROUP BY m.conversation, m.sent_by",
        {user, old, target});
    if (!tops.ok()) return tops.status();
    std::vector<MarkChange> candidates;
    for (size_t r = 0; r < tops->size(); ++r) {
      candidates.push_back(
          MarkChange{tops->Text(r, 0), user, tops->Text(r, 1), 0, tops->Int(r, 2)});
    }
    std::sort(candidates.begin(), candidates.end(), [](const MarkChange& a, const MarkChange& b) {
      return a.conversation < b.conversation;
    });
    for (MarkChange& c : candidates) {
      absl::StatusOr<SqlRows> moved = db_->Run(
          "UPDATE members SET delivered_seq = $3"
          " WHERE owner = $1 AND conversation = $2 AND delivered_seq < $3",
          {user, c.conversation, c.delivered_seq});
      if (!moved.ok()) return moved.status();
      if (moved->affected() > 0) changes.push_back(std::move(c));
    }
    return absl::OkStatus();
  }));
  return changes;
}

absl::StatusOr<int64_t> SqlMessageStore::PruneOlderThan(int64_t ts_ms, int limit) {
  if (limit <= 0) return absl::InvalidArgumentError("prune limit must be positive");
  int64_t deleted = 0;
  STORE_RETURN_IF_ERROR(db_->Transaction(Mode::kWrite, [&]() -> absl::Status {
    deleted = 0;
    absl::StatusOr<SqlRows> old = db_->Run(
        "SELECT id, sent_by, sender_useq, send_to, recipient_useq FROM messages"
        " WHERE ts_ms < $1 ORDER BY ts_ms LIMIT $2",
        {ts_ms, static_cast<int64_t>(limit)});
    if (!old.ok()) return old.status();
    const char* kDropEntry = "DELETE FROM stream_entries WHERE owner = $1 AND useq = $2";
    for (size_t r = 0; r < old->size(); ++r) {
      STORE_RETURN_IF_ERROR(db_->Run(kDropEntry, {old->Text(r, 1), old->Int(r, 2)}).status());
      if (old->Text(r, 1) != old->Text(r, 3)) {
        STORE_RETURN_IF_ERROR(db_->Run(kDropEntry, {old->Text(r, 3), old->Int(r, 4)}).status());
      }
      absl::StatusOr<SqlRows> gone =
          db_->Run("DELETE FROM messages WHERE id = $1", {old->Text(r, 0)});
      if (!gone.ok()) return gone.status();
      deleted += gone->affected();
    }
    return absl::OkStatus();
  }));
  return deleted;
}

}  // namespace chat::store
