#include "store/sqlite_checkpointer.h"

#include <sqlite3.h>

#include <utility>

namespace chat::store {

SqliteCheckpointer::SqliteCheckpointer(std::string path, const char* vfs, bool fsync,
                                       int busy_timeout_ms, int start_frames, int force_frames)
    : path_(std::move(path)),
      vfs_(vfs),
      fsync_(fsync),
      busy_timeout_ms_(busy_timeout_ms),
      start_frames_(start_frames),
      force_frames_(force_frames) {}

SqliteCheckpointer::~SqliteCheckpointer() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  if (db_ != nullptr) sqlite3_close_v2(db_);
}

bool SqliteCheckpointer::AfterCommit(int frames) {
  if (frames < start_frames_) return false;
  {
    absl::MutexLock lock(&mu_);
    // Each run syncs both files: another only once a quarter of the
    // threshold came since what the last one copied (0 after the log
    // started over).
    const int copied = backfilled_ <= frames ? backfilled_ : 0;
    if (frames - copied < start_frames_ / 4 && frames < force_frames_) return false;
    requested_ = true;
    // Started on the first checkpoint due: a store that is only read, or
    // written a little, never has the thread.
    if (!started_ && !stopping_) {
      started_ = true;
      thread_ = std::thread([this] { Run(); });
    }
  }
  return frames >= force_frames_;
}

void SqliteCheckpointer::CheckpointOn(sqlite3* writer) {
  absl::MutexLock run(&run_mu_);
  // FULL: no writer can come in between (this one is it), so everything in
  // the log is copied and the next transaction starts it over.
  sqlite3_wal_checkpoint_v2(writer, nullptr, SQLITE_CHECKPOINT_FULL, nullptr, nullptr);
}

int64_t SqliteCheckpointer::completed() const {
  absl::MutexLock lock(&mu_);
  return completed_;
}

int64_t SqliteCheckpointer::runs() const {
  absl::MutexLock lock(&mu_);
  return runs_;
}

void SqliteCheckpointer::Run() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](SqliteCheckpointer* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return self->requested_ || self->stopping_;
          },
          this));
      if (stopping_) return;
      requested_ = false;
      ++runs_;  // counted even when the file cannot be opened
    }
    CheckpointOnce();
  }
}

void SqliteCheckpointer::CheckpointOnce() {
  if (db_ == nullptr) {
    // No CREATE: the writer made the file; a missing one is not recreated.
    if (sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, vfs_) !=
        SQLITE_OK) {
      sqlite3_close_v2(db_);
      db_ = nullptr;
      return;  // the writer's forced checkpoints keep the log bounded
    }
    sqlite3_busy_timeout(db_, busy_timeout_ms_);
    // The checkpoint's syncs follow the writer's setting (both sync the log
    // before copying and the database after).
    sqlite3_exec(db_, fsync_ ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", nullptr,
                 nullptr, nullptr);
  }
  int log = 0;
  int copied = 0;
  int rc;
  {
    absl::MutexLock run(&run_mu_);
    rc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
  }
  absl::MutexLock lock(&mu_);
  if (rc == SQLITE_OK && copied >= 0) backfilled_ = copied;
  if (rc == SQLITE_OK && log >= 0 && copied == log) ++completed_;
  if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
    // A broken connection: opened again next time.
    sqlite3_close_v2(db_);
    db_ = nullptr;
  }
}

}  // namespace chat::store
