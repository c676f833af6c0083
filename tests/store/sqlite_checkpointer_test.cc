// The log of a WAL-mode SQLite file is copied back into the database by the
// store's own checkpoint thread (store/sqlite_checkpointer), not by the
// commit that crosses the threshold; the log stays bounded either way.
#include "store/sqlite_checkpointer.h"

#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "store/sqlite_store.h"
#include "tests/support/scratch_dir.h"

namespace chat::store {
namespace {

bool Exec(sqlite3* db, const std::string& sql) {
  return sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK;
}

class CheckpointerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty()) << "mkdtemp failed";
    path_ = dir_.path() + "/test.db";
  }
  uintmax_t Size(const std::string& file) const {
    std::error_code error;
    const uintmax_t size = std::filesystem::file_size(file, error);
    return error ? 0 : size;
  }
  // Waits (up to 20 s) for `done`; true if it came.
  template <typename Done>
  static bool WaitFor(Done done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }

  ::chat::testing::ScratchDir dir_{"chat-checkpointer-test"};
  std::string path_;
};

TEST_F(CheckpointerTest, CopiesTheLogOnItsOwnThreadWhileTheWriterGoesOn) {
  sqlite3* db = nullptr;
  ASSERT_EQ(
      sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr),
      SQLITE_OK);
  ASSERT_TRUE(
      Exec(db,
           "PRAGMA page_size=4096; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
           "PRAGMA wal_autocheckpoint=0; CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB);"));
  // About 2 MB of rows: all of it in the log, none in the database yet.
  for (int i = 0; i < 500; ++i) {
    ASSERT_TRUE(Exec(db, absl::StrCat("INSERT INTO t (b) VALUES (zeroblob(4000))")));
  }
  const uintmax_t before = Size(path_);
  EXPECT_LT(before, 100u << 10) << "the rows are still only in the log";
  EXPECT_GT(Size(path_ + "-wal"), 1u << 20);

  SqliteCheckpointer checkpointer(path_, nullptr, false, 5000, /*start_frames=*/100,
                                  /*force_frames=*/100000);
  EXPECT_FALSE(checkpointer.AfterCommit(50)) << "below the threshold";
  EXPECT_EQ(checkpointer.runs(), 0);
  // Due: the thread does it; the writer is not asked to.
  EXPECT_FALSE(checkpointer.AfterCommit(600));
  ASSERT_TRUE(WaitFor([&] { return checkpointer.completed() >= 1; }))
      << "runs: " << checkpointer.runs();
  EXPECT_GT(Size(path_), 2000u * 1000) << "the rows were copied into the database";

  // The writer commits on while the log is copied; the next checkpoint
  // takes what came since, and a fresh connection sees every row.
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(Exec(db, "INSERT INTO t (b) VALUES (zeroblob(4000))"));
    if (i % 50 == 0) checkpointer.AfterCommit(5000);
  }
  const int64_t runs = checkpointer.runs();
  checkpointer.AfterCommit(5000);  // a run starts after this
  ASSERT_TRUE(WaitFor([&] { return checkpointer.runs() > runs; }));
  sqlite3_close_v2(db);
  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path_.c_str(), &reader, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(reader, "SELECT COUNT(*) FROM t", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), 700);
  sqlite3_finalize(stmt);
  sqlite3_close_v2(reader);
}

TEST_F(CheckpointerTest, TheWriterCheckpointsItselfWhenTheThreadCannotKeepUp) {
  // A file the thread cannot open: it never copies anything.
  SqliteCheckpointer checkpointer(dir_.path() + "/missing/none.db", nullptr, false, 100, 100, 400);
  EXPECT_FALSE(checkpointer.AfterCommit(99));
  EXPECT_FALSE(checkpointer.AfterCommit(399));
  EXPECT_TRUE(checkpointer.AfterCommit(400));
  ASSERT_TRUE(WaitFor([&] { return checkpointer.runs() >= 1; }));
  EXPECT_EQ(checkpointer.completed(), 0);
}

TEST_F(CheckpointerTest, AStoreKeepsItsLogBoundedAndItsRows) {
  StoreOptions options;
  options.wal_checkpoint_bytes = 64 << 10;
  absl::StatusOr<std::unique_ptr<SqlDb>> db = OpenSqliteDb(path_, options);
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_TRUE((*db)->Execute("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)").ok());
  uintmax_t largest_log = 0;
  const std::string blob(1000, 'x');
  for (int i = 0; i < 3000; ++i) {
    absl::Status status = (*db)->Transaction(SqlDb::Mode::kWrite, [&]() -> absl::Status {
      absl::StatusOr<SqlRows> rows = (*db)->Run("INSERT INTO t (b) VALUES ($1)", {Blob{blob}});
      return rows.status();
    });
    ASSERT_TRUE(status.ok()) << status;
    largest_log = std::max(largest_log, Size(path_ + "-wal"));
  }
  // 3 MB written without a pause; the log never held more than the forced
  // limit (2 x 64 KiB of frames, each a 2 KiB page and its header) and a
  // transaction.
  EXPECT_LT(largest_log, 2 * (64u << 10) * 2072 / 2048 + (16u << 10));
  absl::StatusOr<SqlRows> count;
  ASSERT_TRUE((*db)
                  ->Transaction(SqlDb::Mode::kRead,
                                [&]() -> absl::Status {
                                  count = (*db)->Run("SELECT COUNT(*) FROM t", {});
                                  return count.status();
                                })
                  .ok());
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(count->Int(0, 0), 3000);
}

}  // namespace
}  // namespace chat::store
