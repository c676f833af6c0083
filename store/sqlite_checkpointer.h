#ifndef CHAT_STORE_SQLITE_CHECKPOINTER_H_
#define CHAT_STORE_SQLITE_CHECKPOINTER_H_

#include <cstdint>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

struct sqlite3;

namespace chat::store {

// Copies a WAL-mode SQLite file's log back into the database on a thread and
// connection of its own, so that the writer's commits never do it.
//
// Why: SQLite's automatic checkpoint runs inside the COMMIT that crosses the
// threshold: that commit copies the whole log (16 MiB) into the database and
// syncs both files while its caller waits, and every message queued behind
// it waits too (25-50 ms on the bench machine, about once a second at 1,000
// messages/s: the whole of the 99th percentile). A PASSIVE checkpoint on
// another connection runs beside the writer: the writer keeps appending
// while it copies, and SQLite starts the log over at the next commit once
// everything in it is copied.
//
// The writer's connection turns its own automatic checkpoint off and calls
// AfterCommit from its WAL hook. SQLite starts the log over only at a
// transaction that begins when every frame is copied; under writes without
// a pause the thread's copies always trail the last commit, so at
// `force_frames` AfterCommit asks the writer to finish the job itself (a
// FULL checkpoint: it copies what the thread has not, usually a small tail,
// and the next transaction starts the log over). The same bounds the log
// when the thread cannot open the file.
class SqliteCheckpointer {
 public:
  // `vfs` as for sqlite3_open_v2 (null: the default). Checkpoints start when
  // a commit leaves `start_frames` frames or more in the log; the writer
  // checkpoints itself from `force_frames` on.
  SqliteCheckpointer(std::string path, const char* vfs, bool fsync, int busy_timeout_ms,
                     int start_frames, int force_frames);
  ~SqliteCheckpointer();  // waits for a checkpoint under way, then stops
  SqliteCheckpointer(const SqliteCheckpointer&) = delete;
  SqliteCheckpointer& operator=(const SqliteCheckpointer&) = delete;

  // From the writer's WAL hook: `frames` are in the log after a commit.
  // Wakes the thread when a checkpoint is due (never waits for it). True:
  // the writer must checkpoint now, itself.
  bool AfterCommit(int frames);
  // What the writer does when AfterCommit said so, on its own connection and
  // outside any transaction: waits for a run of the thread to end (two
  // checkpoints at once would fail with BUSY), then copies the rest.
  void CheckpointOn(sqlite3* writer);

  // Checkpoints the thread completed (every frame of the log copied), and
  // ones it started at all (failures included); for tests.
  int64_t completed() const;
  int64_t runs() const;

 private:
  void Run();
  // One PASSIVE checkpoint on the thread's connection (opened on first use).
  void CheckpointOnce();

  const std::string path_;
  const char* const vfs_;
  const bool fsync_;
  const int busy_timeout_ms_;
  const int start_frames_;
  const int force_frames_;
  sqlite3* db_ = nullptr;  // the thread's own connection
  // Held while either connection checkpoints.
  absl::Mutex run_mu_;
  mutable absl::Mutex mu_;
  bool requested_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  int64_t completed_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t runs_ ABSL_GUARDED_BY(mu_) = 0;
  int backfilled_ ABSL_GUARDED_BY(mu_) = 0;  // frames the last run copied
  std::thread thread_;
};

}  // namespace chat::store

#endif  // CHAT_STORE_SQLITE_CHECKPOINTER_H_
