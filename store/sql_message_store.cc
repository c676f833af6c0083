#include "store/sql_message_store.h"

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "store/sql_message_rows.h"

namespace chat::store {
namespace {

using Mode = SqlDb::Mode;

constexpr char kKnowUser[] =
    "INSERT INTO streams (owner) VALUES ($1) ON CONFLICT (owner) DO NOTHING";
constexpr char kReadMarks[] = "SELECT last_useq, reached_useq FROM streams WHERE owner = $1";

// A kReadMarks row (none: the user has no row yet).
UserMarks MarksOf(const SqlRows& rows) {
  return rows.empty() ? UserMarks{} : UserMarks{rows.Int(0, 0), rows.Int(0, 1)};
}

// Named so that they cannot clash with the user store's tables when both
// live in one PostgreSQL database.
std::string Schema(const SqlDb& db) {
  const std::string blob = db.BlobType();
  const std::string keyed = db.KeyedTable();
  return absl::StrCat(
      "CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)", keyed,
      ";"
      "CREATE TABLE IF NOT EXISTS streams (owner TEXT PRIMARY KEY,"
      " last_useq BIGINT NOT NULL DEFAULT 0, reached_useq BIGINT NOT NULL DEFAULT 0)",
      keyed,
      ";"
      "CREATE TABLE IF NOT EXISTS conversations (id TEXT PRIMARY KEY,"
      " last_seq BIGINT NOT NULL DEFAULT 0)",
      keyed,
      ";"
      "CREATE TABLE IF NOT EXISTS members (owner TEXT NOT NULL, conversation TEXT NOT NULL,"
      " peer TEXT NOT NULL,"
      " read_seq BIGINT NOT NULL DEFAULT 0, delivered_seq BIGINT NOT NULL DEFAULT 0,"
      " PRIMARY KEY (owner, conversation))",
      keyed,
      ";"
      "CREATE TABLE IF NOT EXISTS messages (id TEXT PRIMARY KEY, conversation TEXT NOT NULL,"
      " seq BIGINT NOT NULL, sent_by TEXT NOT NULL, send_to TEXT NOT NULL,"
      " sender_useq BIGINT NOT NULL, recipient_useq BIGINT NOT NULL, body ",
      blob, " NOT NULL, ts_ms BIGINT NOT NULL, idem_key ", blob,
      ", server SMALLINT NOT NULL DEFAULT 0, type ", blob, ", metadata ", blob,
      ", UNIQUE (conversation, seq));"
      "CREATE UNIQUE INDEX IF NOT EXISTS messages_idem ON messages (sent_by, idem_key)"
      " WHERE idem_key IS NOT NULL;"
      "CREATE INDEX IF NOT EXISTS messages_by_ts ON messages (ts_ms);"
      "CREATE TABLE IF NOT EXISTS stream_entries (owner TEXT NOT NULL, useq BIGINT NOT NULL,"
      " message_id TEXT NOT NULL, PRIMARY KEY (owner, useq))",
      keyed, ";");
}

// Columns added to `messages` after its first version, with their types:
// a database of an older version gets them on open. Cheap when unused: 0
// or NULL (a NULL costs SQLite one header byte and PostgreSQL one bit).
std::vector<std::pair<std::string, std::string>> AddedMessageColumns(const SqlDb& db) {
  return {{"server", "SMALLINT NOT NULL DEFAULT 0"},
          {"type", db.BlobType()},
          {"metadata", db.BlobType()}};
}

absl::Status AddMissingColumns(SqlDb& db) {
  const auto added = AddedMessageColumns(db);
  // Only the missing ones are added. On PostgreSQL even ALTER TABLE ... ADD
  // COLUMN IF NOT EXISTS takes an ACCESS EXCLUSIVE lock on messages: a
  // replica starting while another one commits deadlocked on it (the index
  // checks above hold a SHARE lock that this would upgrade).
  absl::StatusOr<SqlRows> columns =
      db.dialect() == SqlDb::Dialect::kPostgres
          ? db.Run(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = 'messages'",
                {})
          : db.Run("SELECT name FROM pragma_table_info('messages')", {});
  if (!columns.ok()) return columns.status();
  std::set<std::string> present;
  for (size_t r = 0; r < columns->size(); ++r) present.insert(columns->Text(r, 0));
  for (const auto& [name, type] : added) {
    if (present.count(name)) continue;
    STORE_RETURN_IF_ERROR(
        db.Execute(absl::StrCat("ALTER TABLE messages ADD COLUMN ", name, " ", type)));
  }
  return absl::OkStatus();
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
    STORE_RETURN_IF_ERROR(AddMissingColumns(*db_));
    // The first version ordered conversations by an index on members'
    // last_useq, rewritten with every message; nothing reads it now.
    STORE_RETURN_IF_ERROR(db_->Execute("DROP INDEX IF EXISTS members_by_last"));
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
  return db_->Transaction(Mode::kWrite, [&] { return db_->Run(kKnowUser, {user}).status(); });
}

absl::StatusOr<std::vector<UserMarks>> SqlMessageStore::KnowAndReadMarks(
    const std::vector<std::string>& users) {
  for (const std::string& user : users) STORE_RETURN_IF_ERROR(CheckUser(user));
  std::vector<UserMarks> out(users.size());
  if (users.empty()) return out;
  // Rows created in name order: the lock order of the class comment.
  std::vector<std::string> sorted = users;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  std::vector<SqlStatement> statements;
  statements.reserve(2 * sorted.size());
  for (const std::string& user : sorted) {
    statements.push_back({kKnowUser, {user}});
    statements.push_back({kReadMarks, {user}});
  }
  STORE_RETURN_IF_ERROR(db_->Transaction(Mode::kWrite, [&]() -> absl::Status {
    absl::StatusOr<std::vector<SqlRows>> rows = db_->RunAll(statements);
    if (!rows.ok()) return rows.status();
    for (size_t i = 0; i < users.size(); ++i) {
      const size_t at = static_cast<size_t>(
          std::lower_bound(sorted.begin(), sorted.end(), users[i]) - sorted.begin());
      out[i] = MarksOf((*rows)[2 * at + 1]);
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<UserMarks> SqlMessageStore::Marks(const std::string& user) {
  STORE_RETURN_IF_ERROR(CheckUser(user));
  UserMarks marks;
  STORE_RETURN_IF_ERROR(db_->Transaction(Mode::kRead, [&]() -> absl::Status {
    absl::StatusOr<SqlRows> rows = db_->Run(kReadMarks, {user});
    if (!rows.ok()) return rows.status();
    marks = MarksOf(*rows);
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
  return AdvanceReachedMany({{user, useq}});
}

absl::StatusOr<std::map<std::string, int64_t>> SqlMessageStore::WantedMarks(
    const std::vector<std::pair<std::string, int64_t>>& marks) {
  std::map<std::string, int64_t> wanted;
  for (const auto& [user, useq] : marks) {
    STORE_RETURN_IF_ERROR(CheckUser(user));
    auto [it, added] = wanted.emplace(user, useq);
    if (!added) it->second = std::max(it->second, useq);
  }
  return wanted;
}

absl::StatusOr<std::vector<MarkChange>> SqlMessageStore::AdvanceReachedMany(
    const std::vector<std::pair<std::string, int64_t>>& marks) {
  // std::map: users' rows are locked in name order, as everywhere else.
  absl::StatusOr<std::map<std::string, int64_t>> wanted = WantedMarks(marks);
  if (!wanted.ok()) return wanted.status();
  std::vector<MarkChange> changes;
  STORE_RETURN_IF_ERROR(
      db_->Transaction(Mode::kWrite, [&] { return AdvanceReachedIn(*wanted, changes); }));
  return changes;
}

absl::Status SqlMessageStore::AdvanceReachedIn(const std::map<std::string, int64_t>& wanted,
                                               std::vector<MarkChange>& changes) {
  changes.clear();
  // Three round trips on PostgreSQL whatever the number of users: lock
  // and read every user's marks; move them and find the peers' messages
  // newly reached; move those delivered marks.
  std::vector<SqlStatement> locks;
  for (const auto& [user, useq] : wanted) {
    locks.push_back({absl::StrCat(kReadMarks, db_->ForUpdate()), {user}});
  }
  absl::StatusOr<std::vector<SqlRows>> current = db_->RunAll(locks);
  if (!current.ok()) return current.status();
  std::vector<SqlStatement> moves;
  std::vector<std::string> moved_users;
  size_t next = 0;
  for (const auto& [user, useq] : wanted) {
    const SqlRows& row = (*current)[next++];
    if (row.empty()) continue;  // unknown user: nothing to reach
    const int64_t old = row.Int(0, 1);
    const int64_t target = std::min(useq, row.Int(0, 0));
    if (target <= old) continue;
    moves.push_back({"UPDATE streams SET reached_useq = $2 WHERE owner = $1", {user, target}});
    // Within a conversation seq and the recipient's useq grow together,
    // so the newest peer message in the newly reached range has every
    // earlier one of that peer reached too.
    moves.push_back(
        {"SELECT m.conversation, m.sent_by, MAX(m.seq) FROM stream_entries s"
         " JOIN messages m ON m.id = s.message_id"
         " WHERE s.owner = $1 AND s.useq > $2 AND s.useq <= $3"
         " AND m.send_to = $1 AND m.sent_by <> $1"
         " GROUP BY m.conversation, m.sent_by",
         {user, old, target}});
    moved_users.push_back(user);
  }
  absl::StatusOr<std::vector<SqlRows>> moved = db_->RunAll(moves);
  if (!moved.ok()) return moved.status();
  std::vector<MarkChange> candidates;
  std::vector<SqlStatement> delivered;
  for (size_t u = 0; u < moved_users.size(); ++u) {
    const SqlRows& tops = (*moved)[2 * u + 1];
    const size_t first = candidates.size();
    for (size_t r = 0; r < tops.size(); ++r) {
      candidates.push_back(
          MarkChange{tops.Text(r, 0), moved_users[u], tops.Text(r, 1), 0, tops.Int(r, 2)});
    }
    // A user's members rows in key order, as the lock order asks.
    std::sort(
        candidates.begin() + first, candidates.end(),
        [](const MarkChange& a, const MarkChange& b) { return a.conversation < b.conversation; });
  }
  for (const MarkChange& c : candidates) {
    delivered.push_back(
        {"UPDATE members SET delivered_seq = $3"
         " WHERE owner = $1 AND conversation = $2 AND delivered_seq < $3",
         {c.user, c.conversation, c.delivered_seq}});
  }
  absl::StatusOr<std::vector<SqlRows>> updated = db_->RunAll(delivered);
  if (!updated.ok()) return updated.status();
  for (size_t i = 0; i < candidates.size(); ++i) {
    if ((*updated)[i].affected() > 0) changes.push_back(std::move(candidates[i]));
  }
  return absl::OkStatus();
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

absl::StatusOr<int64_t> SqlMessageStore::EraseUser(const std::string& user) {
  STORE_RETURN_IF_ERROR(CheckUser(user));
  int64_t deleted = 0;
  STORE_RETURN_IF_ERROR(db_->Transaction(Mode::kWrite, [&]() -> absl::Status {
    deleted = 0;
    // The user's row first (the lock order): commits to or from the user
    // wait for the erasure and then start a new stream.
    absl::StatusOr<SqlRows> known =
        db_->Run(absl::StrCat("SELECT 1 FROM streams WHERE owner = $1", db_->ForUpdate()), {user});
    if (!known.ok()) return known.status();
    if (known->empty()) return absl::NotFoundError(absl::StrCat("unknown user ", user));
    // Each statement reads what a later one deletes, hence the order. The
    // user's stream entries lead to every message of the user (commits
    // write both, pruning deletes both) and through them to the peers'
    // entries; the user's member rows lead to the conversations.
    std::vector<SqlStatement> steps = {
        {"DELETE FROM stream_entries WHERE (owner, useq) IN ("
         "SELECT CASE WHEN m.sent_by = $1 THEN m.send_to ELSE m.sent_by END,"
         " CASE WHEN m.sent_by = $1 THEN m.recipient_useq ELSE m.sender_useq END"
         " FROM stream_entries s JOIN messages m ON m.id = s.message_id"
         " WHERE s.owner = $1 AND m.sent_by <> m.send_to)",
         {user}},
        {"DELETE FROM messages WHERE id IN"
         " (SELECT message_id FROM stream_entries WHERE owner = $1)",
         {user}},
        {"DELETE FROM stream_entries WHERE owner = $1", {user}},
        {"DELETE FROM conversations WHERE id IN"
         " (SELECT conversation FROM members WHERE owner = $1)",
         {user}},
        {"DELETE FROM members WHERE (owner, conversation) IN"
         " (SELECT peer, conversation FROM members WHERE owner = $1)",
         {user}},
        {"DELETE FROM members WHERE owner = $1", {user}},
        {"DELETE FROM streams WHERE owner = $1", {user}},
    };
    absl::StatusOr<std::vector<SqlRows>> done = db_->RunAll(steps);
    if (!done.ok()) return done.status();
    deleted = (*done)[1].affected();
    return absl::OkStatus();
  }));
  return deleted;
}

}  // namespace chat::store
