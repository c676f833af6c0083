// Write cost of the message store per message, per engine and batch size:
// Commit (batches of N, as the store worker's group commit) and
// AdvanceReachedMany (one call per committed batch, the recipients' marks,
// as after a delivered batch); then both per batch, the previous batch's
// marks in a transaction of their own after each commit or in the commit's
// (CommitAndAdvance), as the message service did and does (phases sep-txn
// and one-txn, per message of both). Not a test: run by hand,
//   build/tests/store/store_bench [seconds=3] [engines=sqlite,postgresql]
//       [batches=1,16,128] [pairs=100] [prefill=20000] [keyed=2] [fsync=0]
// pairs: users talk in fixed pairs (2*pairs users), round robin over the
// pairs; keyed=K: every K-th message has an idempotency key (0: none);
// prefill: messages committed before measuring, so the b-trees are not
// trivially small. fsync=1: SQLite synchronous=FULL. PostgreSQL always
// runs with fsync on, as in production.
//
// Then 20 users' streams are read whole by Sync in pages of 500.
//
// Reported per message, for each phase: CPU-µs of this process (getrusage)
// and, on PostgreSQL, of every server process (schedstat: the store's
// backend, WAL writer, checkpointer...; the bench's own monitoring
// connection excluded); bytes written (write_bytes of /proc/PID/io: what
// reaches the page cache for the disk, i.e. SQLite's WAL frames and
// checkpoints) and, on PostgreSQL, WAL bytes generated. CPU and bytes are
// steadier than wall time on a shared machine.
#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "store/open_store.h"
#include "store/postgres_store.h"
#include "store/sql_db.h"
#include "tests/support/postgres_server.h"

namespace {

using chat::store::Committed;
using chat::store::MessageStore;
using chat::store::NewMessage;

struct Config {
  double seconds = 3;
  std::set<std::string> engines = {"sqlite", "postgresql"};
  std::vector<int> batches = {1, 16, 128};
  int pairs = 100;
  int prefill = 20000;
  int keyed = 2;
  bool fsync = false;
};

[[noreturn]] void Die(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "%s: %s\n", what.c_str(), std::string(status.message()).c_str());
  std::exit(1);
}

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// A field of /proc/PID/io ("write_bytes", "wchar"); 0 if unreadable.
int64_t IoField(const std::string& pid, const std::string& field) {
  std::ifstream in("/proc/" + pid + "/io");
  std::string key;
  int64_t value = 0;
  while (in >> key >> value) {
    if (key == field + ":") return value;
  }
  return 0;
}

// Nanoseconds on CPU (first field of /proc/PID/schedstat).
int64_t CpuNs(const std::string& pid) {
  std::ifstream in("/proc/" + pid + "/schedstat");
  int64_t ns = 0;
  in >> ns;
  return ns;
}

// The processes of one PostgreSQL server: the postmaster and its children.
std::vector<std::string> ServerPids(const std::string& postmaster, const std::string& excluded) {
  std::vector<std::string> pids = {postmaster};
  DIR* proc = opendir("/proc");
  while (dirent* e = readdir(proc)) {
    const std::string pid = e->d_name;
    if (pid.empty() || !std::isdigit(static_cast<unsigned char>(pid[0])) || pid == excluded) {
      continue;
    }
    std::ifstream in("/proc/" + pid + "/stat");
    std::string line;
    std::getline(in, line);
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    std::string state, ppid;
    rest >> state >> ppid;
    if (ppid == postmaster) pids.push_back(pid);
  }
  closedir(proc);
  return pids;
}

// The PostgreSQL side of a measurement: a monitoring connection of its own.
class ServerProbe {
 public:
  explicit ServerProbe(const std::string& url) {
    absl::StatusOr<std::unique_ptr<chat::store::SqlDb>> db =
        chat::store::OpenPostgresDb(url, chat::store::StoreOptions{});
    if (!db.ok()) Die("postgresql probe", db.status());
    db_ = std::move(*db);
    self_ = std::to_string(Query("SELECT pg_backend_pid()"));
    std::ifstream in("/proc/" + self_ + "/stat");
    std::string line;
    std::getline(in, line);
    std::istringstream rest(line.substr(line.rfind(')') + 2));
    std::string state;
    rest >> state >> postmaster_;
  }
  struct Sample {
    int64_t cpu_ns = 0;
    int64_t write_bytes = 0;
    int64_t wal = 0;
  };
  Sample Take() {
    Sample s;
    for (const std::string& pid : ServerPids(postmaster_, self_)) {
      s.cpu_ns += CpuNs(pid);
      s.write_bytes += IoField(pid, "write_bytes");
    }
    s.wal = Query("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint");
    return s;
  }

 private:
  int64_t Query(const std::string& sql) {
    int64_t value = 0;
    absl::Status status = db_->Transaction(chat::store::SqlDb::Mode::kRead, [&]() -> absl::Status {
      absl::StatusOr<chat::store::SqlRows> rows = db_->Run(sql, {});
      if (!rows.ok()) return rows.status();
      value = rows->Int(0, 0);
      return absl::OkStatus();
    });
    if (!status.ok()) Die("postgresql probe", status);
    return value;
  }
  std::unique_ptr<chat::store::SqlDb> db_;
  std::string self_;
  std::string postmaster_;
};

struct Totals {
  double cpu = 0;
  int64_t write_bytes = 0;
  int64_t wchar = 0;
  ServerProbe::Sample server;
};

Totals Now(ServerProbe* probe) {
  Totals t;
  t.cpu = CpuSeconds();
  t.write_bytes = IoField("self", "write_bytes");
  t.wchar = IoField("self", "wchar");
  if (probe != nullptr) t.server = probe->Take();
  return t;
}

void Report(const char* phase, const Totals& a, const Totals& b, int64_t messages, double wall,
            bool server) {
  const double n = static_cast<double>(messages);
  std::printf("  %-7s %8.0f msg/s  client %6.1f cpu-us %7.0f wr-B %7.0f wchar-B", phase, n / wall,
              (b.cpu - a.cpu) * 1e6 / n, (b.write_bytes - a.write_bytes) / n,
              (b.wchar - a.wchar) / n);
  if (server) {
    std::printf("  server %6.1f cpu-us %7.0f wr-B %7.0f wal-B",
                (b.server.cpu_ns - a.server.cpu_ns) / 1e3 / n,
                (b.server.write_bytes - a.server.write_bytes) / n,
                static_cast<double>(b.server.wal - a.server.wal) / n);
  }
  std::printf("\n");
}

class Workload {
 public:
  explicit Workload(const Config& config) : config_(config) {}
  std::vector<NewMessage> Batch(int size) {
    std::vector<NewMessage> batch;
    for (int i = 0; i < size; ++i) {
      const int n = ++next_;
      const int pair = n % config_.pairs;
      const bool forth = (n / config_.pairs) % 2 == 0;
      const std::string a = "user" + std::to_string(2 * pair);
      const std::string b = "user" + std::to_string(2 * pair + 1);
      NewMessage m;
      m.id = "m" + std::to_string(1000000000 + n);
      m.sent_by = forth ? a : b;
      m.send_to = forth ? b : a;
      m.text = "hello there, this is a message of about sixty-four bytes ......";
      m.ts_ms = 1764000000000 + n;
      if (config_.keyed > 0 && n % config_.keyed == 0) m.idempotency_key = "k" + std::to_string(n);
      batch.push_back(std::move(m));
    }
    return batch;
  }

 private:
  const Config& config_;
  int next_ = 0;
};

void Measure(const std::string& engine, const std::string& url, const Config& config) {
  chat::store::StoreOptions options;
  options.fsync = config.fsync;
  std::unique_ptr<ServerProbe> probe;
  if (engine == "postgresql") probe = std::make_unique<ServerProbe>(url);
  absl::StatusOr<std::unique_ptr<MessageStore>> store = chat::store::OpenMessageStore(url, options);
  if (!store.ok()) Die(engine, store.status());
  Workload workload(config);
  auto commit = [&](const std::vector<NewMessage>& batch) {
    absl::StatusOr<std::vector<Committed>> r = (*store)->Commit(batch);
    if (!r.ok()) Die(engine + " commit", r.status());
    return std::move(*r);
  };
  for (int done = 0; done < config.prefill; done += 128) commit(workload.Batch(128));

  for (int batch_size : config.batches) {
    std::printf("%s batch %d\n", engine.c_str(), batch_size);
    // Commit phase; each batch's recipients' marks are kept for the next.
    std::vector<std::vector<std::pair<std::string, int64_t>>> marks;
    int64_t messages = 0;
    const Totals before = Now(probe.get());
    const auto start = std::chrono::steady_clock::now();
    const auto end = start + std::chrono::duration<double>(config.seconds);
    while (std::chrono::steady_clock::now() < end) {
      std::vector<NewMessage> batch = workload.Batch(batch_size);
      std::vector<Committed> done = commit(batch);
      std::map<std::string, int64_t> reached;
      for (size_t i = 0; i < batch.size(); ++i) {
        if (!done[i].duplicate) reached[batch[i].send_to] = done[i].recipient_useq;
      }
      marks.emplace_back(reached.begin(), reached.end());
      messages += batch_size;
    }
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const Totals after = Now(probe.get());
    Report("commit", before, after, messages, wall, probe != nullptr);

    // AdvanceReachedMany phase: the same batches' marks, one call each.
    const Totals before_advance = Now(probe.get());
    const auto start_advance = std::chrono::steady_clock::now();
    for (const auto& m : marks) {
      absl::StatusOr<std::vector<chat::store::MarkChange>> r = (*store)->AdvanceReachedMany(m);
      if (!r.ok()) Die(engine + " advance", r.status());
    }
    const double wall_advance =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_advance).count();
    Report("advance", before_advance, Now(probe.get()), messages, wall_advance, probe != nullptr);

    // What the message service does per wake-up: the previous batch's
    // marks saved in a transaction of their own after each commit, or
    // together with it (CommitAndAdvance).
    for (const bool together : {false, true}) {
      std::vector<std::pair<std::string, int64_t>> pending;
      int64_t sent = 0;
      const Totals before_pair = Now(probe.get());
      const auto start_pair = std::chrono::steady_clock::now();
      const auto end_pair = start_pair + std::chrono::duration<double>(config.seconds);
      while (std::chrono::steady_clock::now() < end_pair) {
        std::vector<NewMessage> batch = workload.Batch(batch_size);
        std::vector<Committed> done;
        if (together) {
          absl::StatusOr<MessageStore::CommitResult> r = (*store)->CommitAndAdvance(batch, pending);
          if (!r.ok()) Die(engine + " commit and advance", r.status());
          done = std::move(r->committed);
        } else {
          done = commit(batch);
          absl::StatusOr<std::vector<chat::store::MarkChange>> r =
              (*store)->AdvanceReachedMany(pending);
          if (!r.ok()) Die(engine + " advance", r.status());
        }
        std::map<std::string, int64_t> reached;
        for (size_t i = 0; i < batch.size(); ++i) {
          if (!done[i].duplicate) reached[batch[i].send_to] = done[i].recipient_useq;
        }
        pending.assign(reached.begin(), reached.end());
        sent += batch_size;
      }
      const double wall_pair =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start_pair).count();
      Report(together ? "one-txn" : "sep-txn", before_pair, Now(probe.get()), sent, wall_pair,
             probe != nullptr);
    }
    std::fflush(stdout);
  }

  // Reads, so that a layout that writes less is seen not to read much
  // worse: 20 users' whole streams in pages of 500, as a catch-up.
  std::printf("%s reads\n", engine.c_str());
  int64_t read = 0;
  const Totals before_sync = Now(probe.get());
  const auto start_sync = std::chrono::steady_clock::now();
  for (int u = 0; u < 20; ++u) {
    int64_t since = 0;
    for (bool more = true; more;) {
      absl::StatusOr<chat::store::SyncPage> page =
          (*store)->Sync("user" + std::to_string(u), since, 500, 1 << 20);
      if (!page.ok()) Die(engine + " sync", page.status());
      read += static_cast<int64_t>(page->messages.size());
      since = page->useq;
      more = page->more;
    }
  }
  const double wall_sync =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_sync).count();
  Report("sync", before_sync, Now(probe.get()), read, wall_sync, probe != nullptr);
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(item);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Config config;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    const std::string key = arg.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : arg.substr(eq + 1);
    if (key == "seconds") {
      config.seconds = std::atof(value.c_str());
    } else if (key == "engines") {
      const std::vector<std::string> engines = Split(value);
      config.engines = std::set<std::string>(engines.begin(), engines.end());
    } else if (key == "batches") {
      config.batches.clear();
      for (const std::string& b : Split(value)) config.batches.push_back(std::atoi(b.c_str()));
    } else if (key == "pairs") {
      config.pairs = std::atoi(value.c_str());
    } else if (key == "prefill") {
      config.prefill = std::atoi(value.c_str());
    } else if (key == "keyed") {
      config.keyed = std::atoi(value.c_str());
    } else if (key == "fsync") {
      config.fsync = value == "1";
    } else {
      std::fprintf(stderr, "unknown argument %s (see store_bench.cc)\n", arg.c_str());
      return 2;
    }
  }
  // Not in /tmp, which may be memory (then nothing would be written).
  char dir[] = "/var/tmp/chat-store-bench-XXXXXX";
  if (mkdtemp(dir) == nullptr) return 1;
  if (config.engines.count("sqlite")) {
    Measure("sqlite", std::string("sqlite:") + dir + "/messages.db", config);
  }
  if (config.engines.count("postgresql")) {
    absl::StatusOr<std::unique_ptr<chat::testing::PostgresServer>> server =
        chat::testing::PostgresServer::Start(chat::testing::PostgresServer::Options{true});
    if (!server.ok()) Die("postgresql", server.status());
    Measure("postgresql", (*server)->Url(), config);
  }
  std::system((std::string("rm -rf ") + dir).c_str());
  return 0;
}
