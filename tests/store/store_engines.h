#ifndef CHAT_TESTS_STORE_STORE_ENGINES_H_
#define CHAT_TESTS_STORE_STORE_ENGINES_H_

#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <filesystem>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "store/message_store.h"
#include "store/open_store.h"
#include "tests/support/postgres_server.h"

// The engines the store suites run every case against. Each gives a fresh,
// empty store location per test and a way to make the engine fail and
// recover.
namespace chat::store::testing {

// `lhs = value of expr`, or the test stops with the status.
#define STORE_CONCAT_INNER(a, b) a##b
#define STORE_CONCAT(a, b) STORE_CONCAT_INNER(a, b)
#define ASSIGN_OK(lhs, expr) ASSIGN_OK_IMPL(STORE_CONCAT(status_or_, __LINE__), lhs, expr)
#define ASSIGN_OK_IMPL(tmp, lhs, expr)   \
  auto tmp = (expr);                     \
  ASSERT_TRUE(tmp.ok()) << tmp.status(); \
  lhs = std::move(*tmp)
#define ASSERT_OK(expr)                   \
  do {                                    \
    absl::Status status_ = (expr);        \
    ASSERT_TRUE(status_.ok()) << status_; \
  } while (0)

// A file in a temporary directory of this test.
class SqliteEngine {
 public:
  static constexpr char kName[] = "Sqlite";

  ~SqliteEngine() {
    Repair().IgnoreError();
    std::error_code ignored;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
  }
  absl::Status SetUp() {
    char dir[] = "/tmp/chat-store-test-XXXXXX";
    if (mkdtemp(dir) == nullptr) return absl::InternalError("mkdtemp failed");
    dir_ = dir;
    return absl::OkStatus();
  }
  // A subdirectory that does not exist yet: the store creates it.
  std::string Url() const { return "sqlite:" + dir_ + "/data/store.db"; }

  // A full disk: no file of this process may grow (root ignores file
  // modes, so a read-only file would not fail in CI).
  absl::Status Break() {
    signal(SIGXFSZ, SIG_IGN);
    getrlimit(RLIMIT_FSIZE, &saved_);
    rlimit none = saved_;
    none.rlim_cur = 0;
    broken_ = true;
    return setrlimit(RLIMIT_FSIZE, &none) == 0 ? absl::OkStatus()
                                               : absl::InternalError("setrlimit failed");
  }
  absl::Status Repair() {
    if (!broken_) return absl::OkStatus();
    broken_ = false;
    return setrlimit(RLIMIT_FSIZE, &saved_) == 0 ? absl::OkStatus()
                                                 : absl::InternalError("setrlimit failed");
  }

 private:
  std::string dir_;
  rlimit saved_{};
  bool broken_ = false;
};

// One real server per test process (started by the first test that needs
// it); each test starts from an empty database.
class PostgresEngine {
 public:
  static constexpr char kName[] = "Postgres";

  static chat::testing::PostgresServer* Server(absl::Status* error) {
    static auto* server = new absl::StatusOr<std::unique_ptr<chat::testing::PostgresServer>>(
        chat::testing::PostgresServer::Start());
    static bool cleanup = (atexit([] { delete server; }), true);
    (void)cleanup;
    if (!server->ok()) {
      *error = server->status();
      return nullptr;
    }
    return server->value().get();
  }

  ~PostgresEngine() { Repair().IgnoreError(); }
  absl::Status SetUp() {
    absl::Status error;
    server_ = Server(&error);
    if (server_ == nullptr) return error;
    return server_->Reset();
  }
  std::string Url() const { return server_->Url(); }
  // The server goes away (pg_ctl stop -m fast) and comes back.
  absl::Status Break() {
    broken_ = true;
    return server_->Stop();
  }
  absl::Status Repair() {
    if (!broken_) return absl::OkStatus();
    broken_ = false;
    return server_->Restart();
  }
  chat::testing::PostgresServer* server() { return server_; }

 private:
  chat::testing::PostgresServer* server_ = nullptr;
  bool broken_ = false;
};

struct EngineNames {
  template <typename E>
  static std::string GetName(int) {
    return E::kName;
  }
};

// A message without the optional fields (server, type, metadata).
inline NewMessage MakeMessage(std::string id, std::string from, std::string to, std::string text,
                              int64_t ts_ms, std::string key = "") {
  NewMessage m;
  m.id = std::move(id);
  m.sent_by = std::move(from);
  m.send_to = std::move(to);
  m.text = std::move(text);
  m.ts_ms = ts_ms;
  m.idempotency_key = std::move(key);
  return m;
}

inline StoreOptions TestOptions() {
  StoreOptions options;
  options.timeout_ms = 3000;
  return options;
}

}  // namespace chat::store::testing

#endif  // CHAT_TESTS_STORE_STORE_ENGINES_H_
