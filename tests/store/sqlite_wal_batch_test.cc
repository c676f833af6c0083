// The WAL write-batching VFS (store/sqlite_wal_batch): what a transaction
// wrote is in the file when COMMIT returns. A child process commits through
// it and dies without closing anything (as a process killed right after its
// last commit answered); the parent then reads the file through SQLite's
// plain default VFS and must find every committed row, nothing of the
// transaction left open, and an intact database.
#include "store/sqlite_wal_batch.h"

#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "tests/support/scratch_dir.h"

namespace chat::store {
namespace {

class WalBatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty()) << "mkdtemp failed";
    path_ = dir_.path() + "/test.db";
  }

  // Runs `body` in a child with a database opened through the batching VFS;
  // the child ends with _exit (no close, no checkpoint). Returns its status.
  template <typename Body>
  int InChild(Body body) {
    const pid_t pid = fork();
    if (pid == 0) {
      sqlite3* db = nullptr;
      if (sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                          WalBatchVfsName()) != SQLITE_OK) {
        _exit(10);
      }
      // Small cache: a big transaction spills pages to the WAL before its
      // commit, and pages written again are rewritten in place there.
      if (!Exec(db,
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=20;"
                "PRAGMA wal_autocheckpoint=0;")) {
        _exit(11);
      }
      _exit(body(db) ? 0 : 12);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  static bool Exec(sqlite3* db, const std::string& sql) {
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK) return true;
    std::fprintf(stderr, "%s: %s\n", sql.substr(0, 60).c_str(), sqlite3_errmsg(db));
    return false;
  }

  // Through SQLite's own default VFS, as another program would read it.
  std::string Query(const std::string& sql) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
    sqlite3_stmt* stmt = nullptr;
    std::string out = "error";
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(stmt, 0);
      out = text != nullptr ? reinterpret_cast<const char*>(text) : "null";
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return out;
  }

  ::chat::testing::ScratchDir dir_{"chat-wal-batch-test"};
  std::string path_;
};

TEST_F(WalBatchTest, EveryCommittedTransactionIsInTheFileWhenCommitReturns) {
  ASSERT_EQ(InChild([](sqlite3* db) {
              if (!Exec(db, "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")) {
                return false;
              }
              for (int i = 1; i <= 500; ++i) {
                const std::string sql =
                    "INSERT INTO t VALUES (" + std::to_string(i) + ", hex(randomblob(200)))";
                if (!Exec(db, "BEGIN IMMEDIATE") || !Exec(db, sql) || !Exec(db, "COMMIT")) {
                  return false;
                }
              }
              // One left open: must leave nothing behind.
              return Exec(db, "BEGIN IMMEDIATE") &&
                     Exec(db, "INSERT INTO t VALUES (100000, 'uncommitted')");
            }),
            0);
  EXPECT_EQ(Query("SELECT count(*) FROM t"), "500");
  EXPECT_EQ(Query("SELECT max(k) FROM t"), "500");
  EXPECT_EQ(Query("PRAGMA integrity_check"), "ok");
}

TEST_F(WalBatchTest, ABigTransactionThatSpillsAndRewritesPagesCommitsWhole) {
  ASSERT_EQ(InChild([](sqlite3* db) {
              if (!Exec(db, "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")) {
                return false;
              }
              // ~6 MB in one transaction (beyond the 4 MiB held at most), its
              // pages changed again after they spilled.
              return Exec(db, "BEGIN IMMEDIATE") &&
                     Exec(db,
                          "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                          "WHERE i < 6000) INSERT INTO t SELECT i, hex(randomblob(500)) FROM n") &&
                     Exec(db, "UPDATE t SET v = 'x' || v WHERE k % 3 = 0") && Exec(db, "COMMIT") &&
                     Exec(db, "BEGIN IMMEDIATE; UPDATE t SET v = 'lost' WHERE k = 1;");
            }),
            0);
  EXPECT_EQ(Query("SELECT count(*) FROM t"), "6000");
  EXPECT_EQ(Query("SELECT count(*) FROM t WHERE v LIKE 'x%'"), "2000");
  EXPECT_EQ(Query("SELECT count(*) FROM t WHERE v = 'lost'"), "0");
  EXPECT_EQ(Query("PRAGMA integrity_check"), "ok");
}

}  // namespace
}  // namespace chat::store
