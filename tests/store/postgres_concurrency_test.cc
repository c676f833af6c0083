// Several writers on one PostgreSQL database (message-service replicas):
// the numbers stay gapless and unique and an idempotency key stores once.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "store/message_store.h"
#include "store/open_store.h"
#include "store/postgres_store.h"
#include "store/sql_db.h"
#include "tests/store/store_engines.h"

namespace chat::store {
namespace {

using testing::PostgresEngine;
using testing::TestOptions;

constexpr int64_t kT0 = 1'764'000'000'000;
constexpr int kWriters = 4;

// Runs `body(w, store)` on kWriters threads, each with a store of its own,
// let go together once every one has opened it. Returns each writer's
// error ("" when it finished).
std::vector<std::string> RunWriters(const std::string& url,
                                    const std::function<absl::Status(int, MessageStore&)>& body) {
  std::atomic<int> ready{0};
  std::vector<std::string> errors(kWriters);
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      absl::StatusOr<std::unique_ptr<MessageStore>> store = OpenMessageStore(url, TestOptions());
      ++ready;
      if (!store.ok()) {
        errors[w] = std::string(store.status().message());
        return;
      }
      while (ready.load() < kWriters) std::this_thread::yield();
      if (absl::Status done = body(w, **store); !done.ok()) {
        errors[w] = std::string(done.message());
      }
    });
  }
  for (std::thread& t : writers) t.join();
  return errors;
}
constexpr int kBatches = 40;

TEST(PostgresConcurrencyTest, ConcurrentWritersNumberWithoutGapsOrDuplicates) {
  PostgresEngine engine;
  ASSERT_OK(engine.SetUp());
  const std::vector<std::string> users = {"u0", "u1", "u2", "u3", "u4"};
  std::atomic<int> stored{0};
  std::atomic<int> race_winners{0};
  const std::vector<std::string> errors =
      RunWriters(engine.Url(), [&](int w, MessageStore& store) -> absl::Status {
        // Everyone retries the same send at once: exactly one is stored.
        absl::StatusOr<std::vector<Committed>> race = store.Commit({testing::MakeMessage(
            "race-" + std::to_string(w), "u0", "u1", "race", kT0, "same-key")});
        if (!race.ok()) return race.status();
        if (!(*race)[0].duplicate) ++race_winners;
        std::mt19937 random(w);
        for (int b = 0; b < kBatches; ++b) {
          std::vector<NewMessage> batch;
          const int size = 1 + random() % 8;
          for (int i = 0; i < size; ++i) {
            batch.push_back(testing::MakeMessage(
                "w" + std::to_string(w) + "-" + std::to_string(b) + "-" + std::to_string(i),
                users[random() % users.size()], users[random() % users.size()], "m", kT0));
          }
          absl::StatusOr<std::vector<Committed>> r = store.Commit(batch);
          if (!r.ok()) return r.status();
          stored += size;
        }
        return absl::OkStatus();
      });
  for (int w = 0; w < kWriters; ++w) EXPECT_EQ(errors[w], "") << "writer " << w;
  EXPECT_EQ(race_winners.load(), 1);

  ASSIGN_OK(std::unique_ptr<MessageStore> store, OpenMessageStore(engine.Url(), TestOptions()));
  std::set<std::string> ids;
  std::map<std::string, std::vector<int64_t>> seqs_by_conversation;
  for (const std::string& user : users) {
    ASSIGN_OK(SyncPage page, store->Sync(user, 0, 100000, 1 << 30));
    for (size_t i = 0; i < page.messages.size(); ++i) {
      const Message& m = page.messages[i];
      ASSERT_EQ(m.useq, static_cast<int64_t>(i + 1)) << user << "'s stream has a gap";
      ids.insert(m.id);
      // Each message once per conversation (from its sender's stream).
      if (m.sent_by == user) seqs_by_conversation[m.conversation].push_back(m.seq);
    }
    ASSIGN_OK(UserMarks marks, store->Marks(user));
    EXPECT_EQ(marks.last_useq, static_cast<int64_t>(page.messages.size()));
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(stored.load() + 1));
  for (auto& [conversation, seqs] : seqs_by_conversation) {
    std::sort(seqs.begin(), seqs.end());
    for (size_t i = 0; i < seqs.size(); ++i) {
      ASSERT_EQ(seqs[i], static_cast<int64_t>(i + 1)) << conversation << " has a gap or a twin";
    }
  }
}

// Replicas saving reached marks with their batches (CommitAndAdvance),
// among reads and marks saved alone: the marks' streams rows are locked in the same name order as
// the counters', so writers never deadlock (PostgreSQL would break one only after deadlock_timeout,
// and the retry hides it: hence the server's count).
TEST(PostgresConcurrencyTest, CommitsCarryingMarksNeverDeadlock) {
  PostgresEngine engine;
  ASSERT_OK(engine.SetUp());
  const std::vector<std::string> users = {"u0", "u1", "u2", "u3", "u4"};
  ASSIGN_OK(std::unique_ptr<SqlDb> db, OpenPostgresDb(engine.Url(), TestOptions()));
  auto deadlocks = [&]() -> absl::StatusOr<int64_t> {
    int64_t n = -1;
    absl::Status s = db->Transaction(SqlDb::Mode::kRead, [&]() -> absl::Status {
      absl::StatusOr<SqlRows> rows =
          db->Run("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()", {});
      if (!rows.ok()) return rows.status();
      n = rows->Int(0, 0);
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    return n;
  };
  ASSIGN_OK(const int64_t deadlocks_before, deadlocks());
  const std::vector<std::string> errors =
      RunWriters(engine.Url(), [&](int w, MessageStore& store) -> absl::Status {
        std::mt19937 random(100 + w);
        for (int b = 0; b < kBatches; ++b) {
          std::vector<NewMessage> batch;
          const int size = 1 + random() % 4;
          for (int i = 0; i < size; ++i) {
            batch.push_back(testing::MakeMessage(
                "w" + std::to_string(w) + "-" + std::to_string(b) + "-" + std::to_string(i),
                users[random() % users.size()], users[random() % users.size()], "m", kT0));
          }
          // Everything so far reached these users (clamped to their last).
          std::vector<std::pair<std::string, int64_t>> marks;
          const int moved = 1 + random() % 3;
          for (int i = 0; i < moved; ++i) {
            marks.emplace_back(users[random() % users.size()], 1 << 30);
          }
          absl::StatusOr<MessageStore::CommitResult> r = store.CommitAndAdvance(batch, marks);
          if (!r.ok()) return r.status();
          // Meanwhile the other writes of marks: reads, and marks saved alone.
          if (b % 3 == 0) {
            absl::StatusOr<MessageStore::ReadResult> read = store.MarkRead(
                users[random() % users.size()], users[random() % users.size()], 1 << 30);
            if (!read.ok()) return read.status();
          }
          if (b % 5 == 0) {
            absl::StatusOr<std::vector<MarkChange>> alone = store.AdvanceReachedMany(marks);
            if (!alone.ok()) return alone.status();
          }
        }
        return absl::OkStatus();
      });
  for (int w = 0; w < kWriters; ++w) EXPECT_EQ(errors[w], "") << "writer " << w;

  // The writers' server processes report their counts as they exit.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  for (;;) {
    int64_t others = 0;
    ASSERT_OK(db->Transaction(SqlDb::Mode::kRead, [&]() -> absl::Status {
      absl::StatusOr<SqlRows> rows = db->Run(
          "SELECT count(*) FROM pg_stat_activity"
          " WHERE datname = current_database() AND pid <> pg_backend_pid()",
          {});
      if (!rows.ok()) return rows.status();
      others = rows->Int(0, 0);
      return absl::OkStatus();
    }));
    if (others == 0) break;
    ASSERT_LT(absl::Now(), deadline) << others << " writer connections still open";
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSIGN_OK(const int64_t deadlocks_after, deadlocks());
  EXPECT_EQ(deadlocks_after - deadlocks_before, 0);

  ASSIGN_OK(std::unique_ptr<MessageStore> store, OpenMessageStore(engine.Url(), TestOptions()));
  for (const std::string& user : users) {
    ASSIGN_OK(SyncPage page, store->Sync(user, 0, 100000, 1 << 30));
    for (size_t i = 0; i < page.messages.size(); ++i) {
      ASSERT_EQ(page.messages[i].useq, static_cast<int64_t>(i + 1))
          << user << "'s stream has a gap";
    }
    ASSIGN_OK(UserMarks marks, store->Marks(user));
    EXPECT_EQ(marks.last_useq, static_cast<int64_t>(page.messages.size()));
    EXPECT_LE(marks.reached_useq, marks.last_useq);
  }
}

}  // namespace
}  // namespace chat::store
