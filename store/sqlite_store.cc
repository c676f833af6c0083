#include "store/sqlite_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <memory>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "store/sql_message_store.h"
#include "store/sql_user_store.h"
#include "store/sqlite_checkpointer.h"
#include "store/sqlite_wal_batch.h"

namespace chat::store {
namespace {

// SQLite numbers its parameters ?1, ?2, ...; the shared SQL says $1, $2.
std::string ToSqliteParams(const std::string& sql) {
  std::string out = sql;
  for (size_t i = 0; i + 1 < out.size(); ++i) {
    if (out[i] == '$' && std::isdigit(static_cast<unsigned char>(out[i + 1]))) out[i] = '?';
  }
  return out;
}

class SqliteDb final : public SqlDb {
 public:
  SqliteDb(std::string path, StoreOptions options) : path_(std::move(path)), options_(options) {}
  ~SqliteDb() override {
    // The thread's connection first: closing last, the writer's checkpoints
    // the log and removes it, as before.
    checkpointer_.reset();
    Close();
  }

  absl::Status Open();
  Dialect dialect() const override { return Dialect::kSqlite; }
  absl::Status Transaction(Mode mode, const std::function<absl::Status()>& body) override;
  absl::Status Execute(const std::string& sql) override;
  absl::StatusOr<SqlRows> Run(const std::string& sql, const std::vector<SqlParam>& params) override;

 private:
  // UNAVAILABLE carrying SQLite's message; the file is reopened before the
  // next transaction, whatever state the error left the connection in.
  absl::Status Failed(const std::string& what);
  void Close();
  // sqlite3_wal_hook: after every commit.
  static int AfterCommit(void* self, sqlite3* db, const char* name, int frames);
  // The log must start over: copies what the checkpoint thread has not.
  void ForceCheckpoint();

  const std::string path_;
  const StoreOptions options_;
  sqlite3* db_ = nullptr;
  bool broken_ = false;
  std::unordered_map<std::string, sqlite3_stmt*> statements_;
  std::unique_ptr<SqliteCheckpointer> checkpointer_;
  bool force_checkpoint_ = false;
};

int SqliteDb::AfterCommit(void* self, sqlite3* db, const char* name, int frames) {
  auto* db_self = static_cast<SqliteDb*>(self);
  if (db_self->checkpointer_ != nullptr && db_self->checkpointer_->AfterCommit(frames)) {
    db_self->force_checkpoint_ = true;  // once COMMIT has returned (Transaction)
  }
  return SQLITE_OK;
}

absl::Status SqliteDb::Failed(const std::string& what) {
  broken_ = true;
  const char* message = db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
  const int code = db_ != nullptr ? sqlite3_extended_errcode(db_) : SQLITE_NOMEM;
  return absl::UnavailableError(
      absl::StrCat("sqlite ", path_, ": ", what, ": ", message, " (", code, ")"));
}

void SqliteDb::Close() {
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  statements_.clear();
  if (db_ != nullptr) sqlite3_close_v2(db_);
  db_ = nullptr;
}

absl::Status SqliteDb::Open() {
  Close();
  broken_ = false;
  const std::filesystem::path dir = std::filesystem::path(path_).parent_path();
  if (!dir.empty()) {
    std::error_code error;
    std::filesystem::create_directories(dir, error);
    if (error) {
      return absl::UnavailableError(
          absl::StrCat("sqlite: cannot create directory ", dir.string(), ": ", error.message()));
    }
  }
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  if (sqlite3_open_v2(path_.c_str(), &db_, flags, WalBatchVfsName()) != SQLITE_OK) {
    absl::Status status = Failed("open");
    Close();
    return status;
  }
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, options_.timeout_ms);
  // WAL: readers never block the writer; NORMAL syncs at checkpoints only,
  // which a process crash cannot undo (a power loss can).
  // A 64 MiB page cache and reads through mmap: the hot path's pages stay
  // in memory instead of costing a pread each; checkpoints (and their
  // syncs) every 16 MiB of log rather than every 4 MiB, on a thread of
  // their own (SqliteCheckpointer), not inside a commit.
  // 2 KiB pages for a new file (an existing one keeps its size): a commit
  // writes every page it changed to the log whole, and most of a message's
  // pages are b-tree leaves it changes by a few dozen bytes (its stream
  // entries, its conversation's index), so smaller pages write about 30 %
  // fewer bytes per message; 1 KiB pages write less still but cost CPU in
  // deeper trees. Must come before journal_mode, which writes the header.
  absl::Status status = Execute(absl::StrCat(
      "PRAGMA page_size=2048; PRAGMA journal_mode=WAL; PRAGMA synchronous=",
      options_.fsync ? "FULL" : "NORMAL",
      "; PRAGMA cache_size=-65536; PRAGMA mmap_size=268435456; PRAGMA temp_store=MEMORY;"));
  if (status.ok()) {
    // The log between checkpoints in bytes, whatever the file's page size.
    sqlite3_stmt* stmt = nullptr;
    int page_size = 0;
    if (sqlite3_prepare_v2(db_, "PRAGMA page_size", -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      page_size = sqlite3_column_int(stmt, 0);
    }
    sqlite3_finalize(stmt);
    if (page_size <= 0) {
      status = Failed("page_size");
    } else {
      if (checkpointer_ == nullptr) {
        const int frames =
            static_cast<int>(std::max<int64_t>(16, options_.wal_checkpoint_bytes / page_size));
        checkpointer_ = std::make_unique<SqliteCheckpointer>(
            path_, WalBatchVfsName(), options_.fsync, options_.timeout_ms, frames, 2 * frames);
      }
      // Replaces SQLite's automatic checkpoint (itself a WAL hook).
      sqlite3_wal_hook(db_, &SqliteDb::AfterCommit, this);
    }
  }
  if (!status.ok()) Close();
  return status;
}

void SqliteDb::ForceCheckpoint() {
  force_checkpoint_ = false;
  if (checkpointer_ != nullptr && db_ != nullptr) checkpointer_->CheckpointOn(db_);
}

absl::Status SqliteDb::Execute(const std::string& sql) {
  char* error = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    sqlite3_free(error);
    return Failed("exec");
  }
  return absl::OkStatus();
}

absl::Status SqliteDb::Transaction(Mode mode, const std::function<absl::Status()>& body) {
  if (db_ == nullptr || broken_) STORE_RETURN_IF_ERROR(Open());
  // IMMEDIATE takes the write lock up front: a deferred transaction that
  // upgrades later can fail with BUSY without waiting.
  STORE_RETURN_IF_ERROR(Execute(mode == Mode::kWrite ? "BEGIN IMMEDIATE" : "BEGIN"));
  absl::Status status = body();
  if (status.ok()) status = Execute("COMMIT");
  if (force_checkpoint_) ForceCheckpoint();
  if (!status.ok() && !sqlite3_get_autocommit(db_)) {
    if (!Execute("ROLLBACK").ok()) broken_ = true;
  }
  return status;
}

absl::StatusOr<SqlRows> SqliteDb::Run(const std::string& sql, const std::vector<SqlParam>& params) {
  sqlite3_stmt*& stmt = statements_[sql];
  if (stmt == nullptr) {
    const std::string text = ToSqliteParams(sql);
    if (sqlite3_prepare_v3(db_, text.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) !=
        SQLITE_OK) {
      statements_.erase(sql);
      return Failed(absl::StrCat("prepare ", sql));
    }
  }
  sqlite3_reset(stmt);
  for (size_t i = 0; i < params.size(); ++i) {
    const int index = static_cast<int>(i + 1);
    const SqlParam& p = params[i];
    int rc = SQLITE_OK;
    if (std::holds_alternative<std::nullptr_t>(p)) {
      rc = sqlite3_bind_null(stmt, index);
    } else if (const int64_t* v = std::get_if<int64_t>(&p)) {
      rc = sqlite3_bind_int64(stmt, index, *v);
    } else if (const std::string* s = std::get_if<std::string>(&p)) {
      rc = sqlite3_bind_text(stmt, index, s->data(), static_cast<int>(s->size()), SQLITE_STATIC);
    } else {
      const std::string& bytes = std::get<Blob>(p).bytes;
      rc = sqlite3_bind_blob(stmt, index, bytes.data(), static_cast<int>(bytes.size()),
                             SQLITE_STATIC);
    }
    if (rc != SQLITE_OK) return Failed("bind");
  }
  SqlRows rows;
  const int columns = sqlite3_column_count(stmt);
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    std::vector<std::optional<std::string>> row(columns);
    for (int c = 0; c < columns; ++c) {
      if (sqlite3_column_type(stmt, c) == SQLITE_NULL) continue;
      const void* data = sqlite3_column_blob(stmt, c);
      const int size = sqlite3_column_bytes(stmt, c);
      row[c].emplace(static_cast<const char*>(data), static_cast<size_t>(size));
    }
    rows.AddRow(std::move(row));
  }
  if (rc != SQLITE_DONE) {
    absl::Status status = Failed(absl::StrCat("step ", sql));
    sqlite3_reset(stmt);
    return status;
  }
  rows.set_affected(sqlite3_changes64(db_));
  sqlite3_reset(stmt);  // releases the statement's read snapshot
  return rows;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SqlDb>> OpenSqliteDb(const std::string& path,
                                                    const StoreOptions& options) {
  auto db = std::make_unique<SqliteDb>(path, options);
  STORE_RETURN_IF_ERROR(db->Open());
  return std::unique_ptr<SqlDb>(std::move(db));
}

absl::StatusOr<std::unique_ptr<MessageStore>> OpenSqliteMessageStore(const std::string& path,
                                                                     const StoreOptions& options) {
  absl::StatusOr<std::unique_ptr<SqlDb>> db = OpenSqliteDb(path, options);
  if (!db.ok()) return db.status();
  return SqlMessageStore::Create(std::move(*db));
}

absl::StatusOr<std::unique_ptr<UserStore>> OpenSqliteUserStore(const std::string& path,
                                                               const StoreOptions& options) {
  absl::StatusOr<std::unique_ptr<SqlDb>> db = OpenSqliteDb(path, options);
  if (!db.ok()) return db.status();
  return SqlUserStore::Create(std::move(*db));
}

}  // namespace chat::store
