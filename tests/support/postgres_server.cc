#include "tests/support/postgres_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "tests/support/process.h"

namespace chat::testing {
namespace {

constexpr char kBin[] = "/usr/lib/postgresql/15/bin";
// Per user: root's template belongs to "postgres", anyone else's to them.
std::string TemplateDir() { return absl::StrCat("/tmp/chat-test-pg15-template-", geteuid()); }

// Commands run as "postgres" when we are root (initdb refuses root).
std::string AsServerUser(const std::string& command) {
  if (geteuid() != 0) return command;
  return absl::StrCat("runuser -u postgres -- ", command);
}

absl::Status Shell(const std::string& command) {
  const int rc = std::system(command.c_str());
  if (rc != 0) return absl::InternalError(absl::StrCat("`", command, "` exited with ", rc));
  return absl::OkStatus();
}

absl::Status GiveToServerUser(const std::string& path) {
  if (geteuid() != 0) return absl::OkStatus();
  const passwd* pw = getpwnam("postgres");
  if (pw == nullptr) return absl::FailedPreconditionError("no 'postgres' user to run the server");
  if (chown(path.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
    return absl::InternalError(absl::StrCat("chown ", path, " failed"));
  }
  return absl::OkStatus();
}

// initdb once per machine; concurrent test processes wait on the lock.
absl::Status EnsureTemplate() {
  const std::string dir = TemplateDir();
  const std::string lock_path = absl::StrCat(dir, ".lock");
  const int lock = open(lock_path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0666);
  if (lock < 0 || flock(lock, LOCK_EX) != 0) {
    return absl::InternalError(absl::StrCat("cannot lock ", lock_path));
  }
  absl::Status status;
  if (!std::filesystem::exists(absl::StrCat(dir, "/PG_VERSION"))) {
    const std::string building = absl::StrCat(dir, ".building");
    std::filesystem::remove_all(building);
    std::filesystem::create_directory(building);
    chmod(building.c_str(), 0700);
    status = GiveToServerUser(building);
    if (status.ok()) {
      status = Shell(AsServerUser(absl::StrCat(kBin, "/initdb -N -A trust -U chat -E UTF8 -D ",
                                               building, " > ", building, ".log 2>&1")));
    }
    if (status.ok()) std::filesystem::rename(building, dir);
  }
  close(lock);
  return status;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostgresServer>> PostgresServer::Start(Options options) {
  if (!std::filesystem::exists(absl::StrCat(kBin, "/postgres"))) {
    return absl::FailedPreconditionError(
        absl::StrCat("PostgreSQL 15 is not installed (", kBin, "): scripts/install-deps.sh"));
  }
  if (absl::Status s = EnsureTemplate(); !s.ok()) return s;
  char dir[] = "/tmp/chat-test-pg-XXXXXX";
  if (mkdtemp(dir) == nullptr) return absl::InternalError("mkdtemp failed");
  std::unique_ptr<PostgresServer> server(new PostgresServer(dir, options));
  if (absl::Status s = GiveToServerUser(dir); !s.ok()) return s;
  if (absl::Status s =
          Shell(AsServerUser(absl::StrCat("cp -a ", TemplateDir(), " ", dir, "/data")));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = server->StartOnFreePort(); !s.ok()) return s;
  return server;
}

absl::Status PostgresServer::StartOnFreePort() {
  // Another process may take the port between FreePort and the server's
  // bind: then try another one.
  absl::Status status;
  for (int attempt = 0; attempt < 3; ++attempt) {
    port_ = FreeLoopbackPort();
    status = Restart();
    if (status.ok()) return status;
  }
  return status;
}

PostgresServer::~PostgresServer() {
  if (running_) PgCtl("-m immediate -w stop").IgnoreError();
  std::error_code ignored;
  // CHAT_KEEP_PG=1 keeps the directory, and the server's log in it, for a
  // look after a failure (deadlocks are logged there with both statements).
  if (getenv("CHAT_KEEP_PG") == nullptr) std::filesystem::remove_all(dir_, ignored);
}

absl::Status PostgresServer::PgCtl(const std::string& args) const {
  return Shell(AsServerUser(absl::StrCat(kBin, "/pg_ctl -D ", dir_, "/data -l ", dir_,
                                         "/server.log -t 60 ", args, " > /dev/null")));
}

absl::Status PostgresServer::Restart() {
  const std::string settings = absl::StrCat("-c listen_addresses=127.0.0.1 -p ", port_, " -k ",
                                            dir_, options_.fsync ? "" : " -c fsync=off");
  absl::Status status = PgCtl(absl::StrCat("-o '", settings, "' -w start"));
  if (!status.ok()) {
    return absl::UnavailableError(
        absl::StrCat("PostgreSQL did not start (see ", dir_, "/server.log): ", status.message()));
  }
  running_ = true;
  return status;
}

absl::Status PostgresServer::Stop() {
  absl::Status status = PgCtl("-m fast -w stop");
  if (status.ok()) running_ = false;
  return status;
}

std::string PostgresServer::Url(const std::string& database) const {
  return absl::StrCat("postgresql://chat@127.0.0.1:", port_, "/", database);
}

absl::Status PostgresServer::Exec(const std::string& sql, const std::string& database) const {
  PGconn* conn = PQconnectdb(Url(database).c_str());
  absl::Status status;
  if (PQstatus(conn) != CONNECTION_OK) {
    status = absl::UnavailableError(PQerrorMessage(conn));
  } else {
    PGresult* r = PQexec(conn, sql.c_str());
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
      status = absl::InternalError(absl::StrCat(sql, ": ", PQerrorMessage(conn)));
    }
    PQclear(r);
  }
  PQfinish(conn);
  return status;
}

absl::Status PostgresServer::Reset() const {
  return Exec(
      "SET client_min_messages = warning; DROP SCHEMA IF EXISTS public CASCADE;"
      " CREATE SCHEMA public;");
}

}  // namespace chat::testing
