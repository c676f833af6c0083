#ifndef CHAT_TESTS_SUPPORT_POSTGRES_SERVER_H_
#define CHAT_TESTS_SUPPORT_POSTGRES_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace chat::testing {

// A real PostgreSQL 15 server for one test process: its own temporary
// directory (data, socket, log) and a free port on 127.0.0.1, user "chat"
// with trust authentication. Run as root (CI) it runs as the "postgres"
// user. The cluster is copied from a template made once by initdb (under
// a lock, in /tmp per user), which takes a second or two off every start.
class PostgresServer {
 public:
  struct Options {
    // fsync=off makes tests faster; benchmarks want the real thing.
    bool fsync = false;
  };

  static absl::StatusOr<std::unique_ptr<PostgresServer>> Start(Options options);
  static absl::StatusOr<std::unique_ptr<PostgresServer>> Start() { return Start(Options()); }
  // Stops the server at once and removes its directory.
  ~PostgresServer();

  // pg_ctl stop -m fast / start again on the same port and data.
  absl::Status Stop();
  absl::Status Restart();

  std::string Url(const std::string& database = "postgres") const;
  int port() const { return port_; }
  // Runs `sql` (several statements allowed) as "chat" on `database`.
  absl::Status Exec(const std::string& sql, const std::string& database = "postgres") const;
  // Drops every table of the "postgres" database: a fresh store per test.
  absl::Status Reset() const;

 private:
  PostgresServer(std::string dir, Options options) : dir_(std::move(dir)), options_(options) {}
  absl::Status StartOnFreePort();
  absl::Status PgCtl(const std::string& args) const;

  std::string dir_;
  Options options_;
  int port_ = 0;
  bool running_ = false;
};

}  // namespace chat::testing

#endif  // CHAT_TESTS_SUPPORT_POSTGRES_SERVER_H_
