#include "tests/support/redis_server.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace chat::testing {
namespace {

constexpr char kRedisServer[] = "/usr/bin/redis-server";
constexpr char kRedisSentinel[] = "/usr/bin/redis-sentinel";

std::string Render(const redisReply* r) {
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      return absl::StrCat(r->integer);
    case REDIS_REPLY_ARRAY: {
      std::vector<std::string> parts;
      for (size_t i = 0; i < r->elements; ++i) parts.push_back(Render(r->element[i]));
      return absl::StrJoin(parts, "\n");
    }
    case REDIS_REPLY_NIL:
      return "";
    default:
      return std::string(r->str, r->len);
  }
}

// Polls `ready` every 50 ms until it holds or `timeout` passes.
template <typename F>
bool WaitFor(F ready, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (ready()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

absl::Status WaitExit(ChildProcess& process, int sig) {
  process.Signal(sig);
  absl::StatusOr<int> status = process.Wait(std::chrono::seconds(10));
  return status.ok() ? absl::OkStatus() : status.status();
}

std::string TempDir(const char* what) {
  std::string dir = absl::StrCat("/tmp/chat-test-", what, "-XXXXXX");
  if (mkdtemp(dir.data()) == nullptr) return "";
  return dir;
}

}  // namespace

absl::StatusOr<std::string> RedisCommand(int port, const std::vector<std::string>& argv) {
  const timeval timeout{2, 0};
  redisContext* ctx = redisConnectWithTimeout("127.0.0.1", port, timeout);
  if (ctx == nullptr || ctx->err != 0) {
    std::string error = ctx == nullptr ? "no memory" : ctx->errstr;
    if (ctx != nullptr) redisFree(ctx);
    return absl::UnavailableError(absl::StrCat("127.0.0.1:", port, ": ", error));
  }
  redisSetTimeout(ctx, timeout);
  std::vector<const char*> args;
  std::vector<size_t> lengths;
  for (const auto& a : argv) {
    args.push_back(a.data());
    lengths.push_back(a.size());
  }
  auto* reply = static_cast<redisReply*>(
      redisCommandArgv(ctx, static_cast<int>(argv.size()), args.data(), lengths.data()));
  absl::StatusOr<std::string> result;
  if (reply == nullptr) {
    result = absl::UnavailableError(absl::StrCat("127.0.0.1:", port, ": ", ctx->errstr));
  } else if (reply->type == REDIS_REPLY_ERROR) {
    result = absl::FailedPreconditionError(std::string(reply->str, reply->len));
  } else {
    result = Render(reply);
  }
  if (reply != nullptr) freeReplyObject(reply);
  redisFree(ctx);
  return result;
}

absl::StatusOr<std::unique_ptr<RedisServer>> RedisServer::Start(Options options) {
  if (!std::filesystem::exists(kRedisServer)) {
    return absl::FailedPreconditionError("redis-server is not installed: scripts/install-deps.sh");
  }
  const std::string dir = TempDir("redis");
  if (dir.empty()) return absl::InternalError("mkdtemp failed");
  std::unique_ptr<RedisServer> server(new RedisServer(dir, options));
  // Another process may take the free port before redis binds it: retry.
  absl::Status status;
  for (int attempt = 0; attempt < 3; ++attempt) {
    server->port_ = FreeLoopbackPort();
    status = server->Launch();
    if (status.ok()) return server;
  }
  return status;
}

absl::Status RedisServer::Launch() {
  std::vector<std::string> argv = {kRedisServer,
                                   "--port",
                                   absl::StrCat(port_),
                                   "--bind",
                                   "127.0.0.1",
                                   "--save",
                                   "",
                                   "--appendonly",
                                   "no",
                                   "--protected-mode",
                                   "no",
                                   "--daemonize",
                                   "no",
                                   "--dir",
                                   dir_,
                                   "--logfile",
                                   absl::StrCat(dir_, "/redis-", port_, ".log")};
  if (options_.replica_of != 0) {
    argv.insert(argv.end(), {"--replicaof", "127.0.0.1", absl::StrCat(options_.replica_of)});
  }
  auto process = std::make_unique<ChildProcess>();
  if (absl::Status s = process->Start(argv); !s.ok()) return s;
  const int port = port_;
  ChildProcess* p = process.get();
  bool exited = false;
  const bool up = WaitFor(
      [&] {
        if (p->Wait(std::chrono::milliseconds(0)).ok()) {
          exited = true;
          return true;
        }
        absl::StatusOr<std::string> pong = RedisCommand(port, {"PING"});
        return pong.ok() && *pong == "PONG";
      },
      std::chrono::seconds(10));
  if (!up || exited) {
    return absl::UnavailableError(
        absl::StrCat("redis-server did not answer PING on port ", port_, " (see ", dir_, ")"));
  }
  process_ = std::move(process);
  return absl::OkStatus();
}

RedisServer::~RedisServer() {
  process_.reset();  // SIGKILL
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

absl::Status RedisServer::Stop() {
  if (process_ == nullptr) return absl::OkStatus();
  absl::Status s = WaitExit(*process_, SIGTERM);
  process_.reset();
  return s;
}

absl::Status RedisServer::Kill() {
  if (process_ == nullptr) return absl::OkStatus();
  absl::Status s = WaitExit(*process_, SIGKILL);
  process_.reset();
  return s;
}

absl::Status RedisServer::Restart() {
  if (process_ != nullptr) return absl::FailedPreconditionError("still running");
  // The port was ours a moment ago; its old sockets may linger (redis sets
  // SO_REUSEADDR), so a few tries are enough.
  absl::Status status;
  for (int attempt = 0; attempt < 5; ++attempt) {
    status = Launch();
    if (status.ok()) return status;
  }
  return status;
}

absl::Status RedisServer::Suspend() {
  if (process_ == nullptr) return absl::FailedPreconditionError("not running");
  return process_->Suspend();
}

void RedisServer::Resume() {
  if (process_ != nullptr) process_->Resume();
}

std::string RedisServer::Url() const { return absl::StrCat("redis://127.0.0.1:", port_); }

absl::StatusOr<std::string> RedisServer::Command(const std::vector<std::string>& argv) const {
  return RedisCommand(port_, argv);
}

absl::StatusOr<std::unique_ptr<SentinelGroup>> SentinelGroup::Start(int primary_port, int count,
                                                                    const std::string& master) {
  if (!std::filesystem::exists(kRedisSentinel)) {
    return absl::FailedPreconditionError(
        "redis-sentinel is not installed: scripts/install-deps.sh");
  }
  const std::string dir = TempDir("sentinel");
  if (dir.empty()) return absl::InternalError("mkdtemp failed");
  std::unique_ptr<SentinelGroup> group(new SentinelGroup(dir, master));
  for (int i = 0; i < count; ++i) {
    absl::Status status;
    for (int attempt = 0; attempt < 3; ++attempt) {
      const int port = FreeLoopbackPort();
      const std::string config = absl::StrCat(dir, "/sentinel-", i, ".conf");
      std::ofstream out(config, std::ios::trunc);
      out << "port " << port << "\nbind 127.0.0.1\ndaemonize no\nprotected-mode no\n"
          << "dir " << dir << "\nlogfile " << dir << "/sentinel-" << i << ".log\n"
          << "sentinel resolve-hostnames no\n"
          << "sentinel monitor " << master << " 127.0.0.1 " << primary_port << " 2\n"
          << "sentinel down-after-milliseconds " << master << " 1000\n"
          << "sentinel failover-timeout " << master << " 3000\n"
          << "sentinel parallel-syncs " << master << " 1\n";
      out.close();
      auto process = std::make_unique<ChildProcess>();
      status = process->Start({kRedisSentinel, config});
      if (!status.ok()) return status;
      ChildProcess* p = process.get();
      bool exited = false;
      const bool up = WaitFor(
          [&] {
            if (p->Wait(std::chrono::milliseconds(0)).ok()) {
              exited = true;
              return true;
            }
            absl::StatusOr<std::string> pong = RedisCommand(port, {"PING"});
            return pong.ok() && *pong == "PONG";
          },
          std::chrono::seconds(10));
      if (up && !exited) {
        group->ports_.push_back(port);
        group->processes_.push_back(std::move(process));
        status = absl::OkStatus();
        break;
      }
      status = absl::UnavailableError(
          absl::StrCat("redis-sentinel did not answer on port ", port, " (see ", dir, ")"));
    }
    if (!status.ok()) return status;
  }
  return group;
}

SentinelGroup::~SentinelGroup() {
  processes_.clear();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string SentinelGroup::Url() const {
  std::vector<std::string> parts;
  for (int port : ports_) parts.push_back(absl::StrCat("127.0.0.1:", port));
  return absl::StrCat("redis-sentinel://", absl::StrJoin(parts, ","), "/", master_);
}

absl::Status SentinelGroup::WaitReady(int replicas, std::chrono::milliseconds timeout) const {
  const int others = static_cast<int>(ports_.size()) - 1;
  const bool ready = WaitFor(
      [&] {
        for (int port : ports_) {
          absl::StatusOr<std::string> master = RedisCommand(port, {"SENTINEL", "master", master_});
          if (!master.ok()) return false;
          // A flat list: name, value, name, value...
          std::vector<std::string> fields = absl::StrSplit(*master, '\n');
          int known_replicas = -1, known_sentinels = -1;
          for (size_t i = 0; i + 1 < fields.size(); i += 2) {
            if (fields[i] == "num-slaves") absl::SimpleAtoi(fields[i + 1], &known_replicas);
            if (fields[i] == "num-other-sentinels") {
              absl::SimpleAtoi(fields[i + 1], &known_sentinels);
            }
          }
          if (known_replicas < replicas || known_sentinels < others) return false;
        }
        return true;
      },
      timeout);
  if (!ready) return absl::DeadlineExceededError("the Sentinels did not find each other in time");
  return absl::OkStatus();
}

absl::StatusOr<int> SentinelGroup::PrimaryPort() const {
  for (int port : ports_) {
    absl::StatusOr<std::string> addr =
        RedisCommand(port, {"SENTINEL", "get-master-addr-by-name", master_});
    if (!addr.ok()) continue;
    std::vector<std::string> parts = absl::StrSplit(*addr, '\n');
    int primary = 0;
    if (parts.size() == 2 && absl::SimpleAtoi(parts[1], &primary)) return primary;
  }
  return absl::UnavailableError("no Sentinel answered");
}

absl::StatusOr<int> SentinelGroup::WaitForFailover(int old_port,
                                                   std::chrono::milliseconds timeout) const {
  int primary = 0;
  const bool done = WaitFor(
      [&] {
        absl::StatusOr<int> port = PrimaryPort();
        if (!port.ok() || *port == old_port) return false;
        absl::StatusOr<std::string> role = RedisCommand(*port, {"ROLE"});
        if (!role.ok() || role->rfind("master", 0) != 0) return false;
        primary = *port;
        return true;
      },
      timeout);
  if (!done) return absl::DeadlineExceededError("no failover in time");
  return primary;
}

}  // namespace chat::testing
