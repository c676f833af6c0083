#include "connection-service/redis_client.h"

#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace chat::connection {
namespace {

RedisReply Copy(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = RedisReply::Type::kString;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::kStatus;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = RedisReply::Type::kError;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::kInteger;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::kArray;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(Copy(r->element[i]));
      break;
    default:
      out.type = RedisReply::Type::kNil;
  }
  return out;
}

// A short-lived connection (a Sentinel, or the first contact with a server).
redisContext* Open(const RedisAddress& address, const RedisTimeouts& timeouts, std::string* error) {
  const timeval connect = absl::ToTimeval(timeouts.connect);
  redisContext* ctx = redisConnectWithTimeout(address.host.c_str(), address.port, connect);
  if (ctx == nullptr || ctx->err != 0) {
    *error = absl::StrCat(address.host, ":", address.port, ": ",
                          ctx == nullptr ? "out of memory" : ctx->errstr);
    if (ctx != nullptr) redisFree(ctx);
    return nullptr;
  }
  const timeval command = absl::ToTimeval(timeouts.command);
  if (redisSetTimeout(ctx, command) != REDIS_OK) {
    *error = absl::StrCat(address.host, ":", address.port, ": cannot set timeout");
    redisFree(ctx);
    return nullptr;
  }
  return ctx;
}

// nullptr on an I/O error (`ctx` is then unusable).
absl::StatusOr<RedisReply> Run(redisContext* ctx, const std::vector<std::string>& argv) {
  std::vector<const char*> args;
  std::vector<size_t> lengths;
  args.reserve(argv.size());
  lengths.reserve(argv.size());
  for (const auto& a : argv) {
    args.push_back(a.data());
    lengths.push_back(a.size());
  }
  auto* reply = static_cast<redisReply*>(
      redisCommandArgv(ctx, static_cast<int>(argv.size()), args.data(), lengths.data()));
  if (reply == nullptr) {
    return absl::UnavailableError(absl::StrCat("redis: ", ctx->errstr));
  }
  RedisReply copy = Copy(reply);
  freeReplyObject(reply);
  return copy;
}

}  // namespace

RedisScript::RedisScript(std::string body) : body_(std::move(body)) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(body_.data()), body_.size(), digest);
  sha1_ = absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), SHA_DIGEST_LENGTH));
}

RedisConnection::RedisConnection(RegistryUrl target, RedisTimeouts timeouts)
    : target_(std::move(target)), timeouts_(timeouts), command_timeout_(timeouts.command) {}

void RedisConnection::SetCommandTimeout(absl::Duration timeout) {
  if (timeout == command_timeout_) return;
  command_timeout_ = timeout;
  // A context that refuses the new timeout keeps the old one: still bounded.
  if (ctx_ != nullptr) redisSetTimeout(ctx_, absl::ToTimeval(timeout));
}

RedisConnection::~RedisConnection() { Disconnect(); }

void RedisConnection::Disconnect() {
  if (ctx_ != nullptr) redisFree(ctx_);
  ctx_ = nullptr;
  peer_.clear();
}

absl::Status RedisConnection::Connect() {
  std::string error;
  RedisAddress primary = target_.address;
  if (target_.kind == RegistryUrl::Kind::kSentinel) {
    // The first Sentinel that answers names the primary.
    std::string errors;
    primary = {};
    for (const auto& sentinel : target_.sentinels) {
      redisContext* s = Open(sentinel, timeouts_, &error);
      if (s == nullptr) {
        absl::StrAppend(&errors, errors.empty() ? "" : "; ", "sentinel ", error);
        continue;
      }
      absl::StatusOr<RedisReply> reply =
          Run(s, {"SENTINEL", "get-master-addr-by-name", target_.master_name});
      redisFree(s);
      if (reply.ok() && reply->type == RedisReply::Type::kArray && reply->elements.size() == 2 &&
          absl::SimpleAtoi(reply->elements[1].str, &primary.port)) {
        primary.host = reply->elements[0].str;
        break;
      }
      absl::StrAppend(&errors, errors.empty() ? "" : "; ", "sentinel ", sentinel.host, ":",
                      sentinel.port, ": ",
                      reply.ok() ? "does not know the master" : reply.status().message());
    }
    if (primary.host.empty()) {
      return absl::UnavailableError(absl::StrCat("no Sentinel named a primary: ", errors));
    }
  }
  redisContext* ctx = Open(primary, timeouts_, &error);
  if (ctx == nullptr) return absl::UnavailableError(absl::StrCat("redis ", error));
  // A Sentinel may still name a primary that was demoted (or not yet
  // promoted): write only to one that says it is the master.
  absl::StatusOr<RedisReply> role = Run(ctx, {"ROLE"});
  if (!role.ok()) {
    redisFree(ctx);
    return absl::UnavailableError(
        absl::StrCat("redis ", primary.host, ":", primary.port, ": ", role.status().message()));
  }
  if (role->type != RedisReply::Type::kArray || role->elements.empty() ||
      role->elements[0].str != "master") {
    redisFree(ctx);
    return absl::UnavailableError(
        absl::StrCat("redis ", primary.host, ":", primary.port, " is not a primary (yet)"));
  }
  if (target_.db != 0) {
    absl::StatusOr<RedisReply> selected = Run(ctx, {"SELECT", absl::StrCat(target_.db)});
    if (!selected.ok() || selected->is_error()) {
      redisFree(ctx);
      return absl::UnavailableError(absl::StrCat("redis: SELECT ", target_.db, " failed"));
    }
  }
  if (command_timeout_ != timeouts_.command)
    redisSetTimeout(ctx, absl::ToTimeval(command_timeout_));
  ctx_ = ctx;
  peer_ = absl::StrCat(primary.host, ":", primary.port);
  // ROLE of a primary: "master", offset, [[ip, port, offset], ...].
  has_replicas_ = role->elements.size() >= 3 && !role->elements[2].elements.empty();
  replicas_checked_ = absl::Now();
  return absl::OkStatus();
}

absl::StatusOr<RedisReply> RedisConnection::Command(const std::vector<std::string>& argv) {
  const bool reused = ctx_ != nullptr;
  if (ctx_ == nullptr) {
    if (absl::Status s = Connect(); !s.ok()) return s;
  }
  absl::StatusOr<RedisReply> reply = Run(ctx_, argv);
  // Closed by the other side, as opposed to a timeout (a server that hangs
  // is not asked twice: the caller hears within one command timeout).
  const bool closed =
      !reply.ok() && (ctx_->err == REDIS_ERR_EOF || absl::StrContains(ctx_->errstr, "reset") ||
                      absl::StrContains(ctx_->errstr, "Broken pipe"));
  if (closed && reused) {
    // A connection that sat idle while Redis restarted or failed over is
    // found dead only now: one more try on a fresh one. (Should the command
    // have run before the connection died, it runs twice: the registry's
    // scripts are idempotent.)
    Disconnect();
    if (absl::Status s = Connect(); !s.ok()) return s;
    reply = Run(ctx_, argv);
  }
  if (!reply.ok()) {
    Disconnect();
    return reply;
  }
  // A primary demoted by Sentinel refuses writes: find the new one next time.
  if (reply->is_error() &&
      (absl::StartsWith(reply->str, "READONLY") || absl::StartsWith(reply->str, "LOADING") ||
       absl::StartsWith(reply->str, "MASTERDOWN"))) {
    Disconnect();
    return absl::UnavailableError(absl::StrCat("redis: ", reply->str));
  }
  return reply;
}

absl::StatusOr<RedisReply> RedisConnection::Eval(const RedisScript& script,
                                                 const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"EVALSHA", script.sha1(), "0"};
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<RedisReply> reply = Command(argv);
  if (reply.ok() && reply->is_error() && absl::StartsWith(reply->str, "NOSCRIPT")) {
    argv[0] = "EVAL";
    argv[1] = script.body();
    reply = Command(argv);
  }
  return reply;
}

void RedisConnection::WaitForReplica(absl::Duration timeout) {
  if (ctx_ == nullptr) return;
  if (!has_replicas_) {
    const absl::Time now = absl::Now();
    if (now - replicas_checked_ < absl::Seconds(1)) return;
    absl::StatusOr<RedisReply> role = Command({"ROLE"});
    if (ctx_ == nullptr || !role.ok()) return;
    replicas_checked_ = now;
    has_replicas_ = role->type == RedisReply::Type::kArray && role->elements.size() >= 3 &&
                    !role->elements[2].elements.empty();
    if (!has_replicas_) return;
  }
  absl::StatusOr<RedisReply> acked =
      Command({"WAIT", "1", absl::StrCat(absl::ToInt64Milliseconds(timeout))});
  if (acked.ok() && acked->type == RedisReply::Type::kInteger && acked->integer == 0) {
    has_replicas_ = false;
    replicas_checked_ = absl::Now();
  }
}

RedisPool::RedisPool(const RegistryUrl& target, RedisTimeouts timeouts, size_t size) {
  for (size_t i = 0; i < size; ++i) {
    auto slot = std::make_unique<Slot>();
    slot->connection = std::make_unique<RedisConnection>(target, timeouts);
    slots_.push_back(std::move(slot));
  }
}

template <typename F>
absl::StatusOr<RedisReply> RedisPool::WithConnection(F&& f) {
  const absl::Time entered = absl::Now();
  {
    // Redis failed a moment ago: answer at once rather than queue behind
    // the connections still trying (a hung server holds each for the
    // command timeout). One call in kRetryAfter tries again.
    absl::MutexLock lock(&state_mu_);
    if (failing_ && entered - last_try_ < kRetryAfter) {
      return absl::UnavailableError(absl::StrCat("redis: ", last_error_));
    }
    last_try_ = entered;
  }
  auto call = [&](RedisConnection& c) {
    absl::StatusOr<RedisReply> reply = f(c);
    absl::MutexLock lock(&state_mu_);
    failing_ = !reply.ok();
    if (failing_) {
      last_error_ = std::string(reply.status().message());
      failed_at_ = absl::Now();
    }
    return reply;
  };
  // A free connection if there is one, else wait for the next in turn.
  for (auto& slot : slots_) {
    if (slot->mu.TryLock()) {
      absl::StatusOr<RedisReply> reply = call(*slot->connection);
      slot->mu.Unlock();
      return reply;
    }
  }
  size_t i;
  {
    absl::MutexLock lock(&state_mu_);
    i = next_++ % slots_.size();
  }
  absl::MutexLock lock(&slots_[i]->mu);
  {
    // Redis failed while this caller waited for the connection: answer
    // now, or each caller queued behind a hung server would wait a command
    // timeout of its own after the one ahead of it.
    absl::MutexLock state(&state_mu_);
    if (failing_ && failed_at_ >= entered) {
      return absl::UnavailableError(absl::StrCat("redis: ", last_error_));
    }
  }
  return call(*slots_[i]->connection);
}

absl::StatusOr<RedisReply> RedisPool::Command(const std::vector<std::string>& argv) {
  return WithConnection([&](RedisConnection& c) { return c.Command(argv); });
}

absl::StatusOr<RedisReply> RedisPool::Eval(const RedisScript& script,
                                           const std::vector<std::string>& args) {
  return WithConnection([&](RedisConnection& c) { return c.Eval(script, args); });
}

absl::StatusOr<RedisReply> RedisPool::EvalWrite(const RedisScript& script,
                                                const std::vector<std::string>& args,
                                                const std::function<bool(const RedisReply&)>& wrote,
                                                absl::Duration replica_timeout) {
  return WithConnection([&](RedisConnection& c) {
    absl::StatusOr<RedisReply> reply = c.Eval(script, args);
    if (reply.ok() && replica_timeout > absl::ZeroDuration() && wrote(*reply)) {
      c.WaitForReplica(replica_timeout);
    }
    return reply;
  });
}

}  // namespace chat::connection
