#include "connection-service/redis_registry.h"

#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "boost/json.hpp"
#include "common/grpc_status.h"
#include "spdlog/spdlog.h"

namespace chat::connection {
namespace {

namespace json = boost::json;

constexpr char kFeed[] = "chat:feed";

// Shared by every script: Redis's clock, the epoch (created when missing:
// ARGV[1] is a fresh candidate), and the helpers that record events.
constexpr char kPrelude[] = R"lua(
local P = 'chat:'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function ms(x) return string.format('%.0f', x) end
local epoch = redis.call('GET', P .. 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', P .. 'epoch', epoch)
  redis.call('SET', P .. 'epoch_at', ms(now))
end
local ev = {}
local function q(s) return cjson.encode(s) end
local function remove(id, r, code, why)
  local c = redis.call('HGET', P .. 'conns', id)
  if not c then return false end
  local o = cjson.decode(c)
  redis.call('HDEL', P .. 'conns', id)
  redis.call('SREM', P .. 'user:' .. o.user, id)
  redis.call('SREM', P .. 'edge:' .. o.edge, id)
  ev[#ev + 1] = '{"k":"removed","r":"' .. r .. '","code":' .. code .. ',"why":' .. q(why) ..
                ',"c":' .. c .. '}'
  return true
end
-- Renews the lease; false when Redis held nothing for this edge process.
-- A new incarnation drops what the previous process left.
local function touch(edge, inc)
  local old = redis.call('HGET', P .. 'edges', edge)
  redis.call('ZADD', P .. 'leases', now, edge)
  if old == inc then return true end
  if old then
    for _, id in ipairs(redis.call('SMEMBERS', P .. 'edge:' .. edge)) do
      remove(id, 'lease', 0, '')
    end
  end
  redis.call('HSET', P .. 'edges', edge, inc)
  ev[#ev + 1] = '{"k":"edge_up","edge":' .. q(edge) .. ',"inc":' .. q(inc) .. '}'
  return false
end
-- One feed entry for all of this script's events. With none, the feed's
-- last entry ('' when empty): a caller that changed nothing still waits until
-- its replica has applied what earlier calls did (one of them may be its own
-- retried call, timed out but executed), so it reads the state it was told.
local function emit()
  if #ev == 0 then
    local last = redis.call('XREVRANGE', P .. 'feed', '+', '-', 'COUNT', 1)
    if #last == 0 then return '' end
    return last[1][1]
  end
  local n = redis.call('INCR', P .. 'seq')
  return redis.call('XADD', P .. 'feed', 'MAXLEN', '~', '100000', '*', 'n', n,
                    'ev', '[' .. table.concat(ev, ',') .. ']')
end
)lua";

// ARGV: epoch, edge, incarnation, then (id, user, JSON) per connection.
constexpr char kRegister[] = R"lua(
local edge = ARGV[2]
local known = touch(edge, ARGV[3])
for i = 4, #ARGV, 3 do
  local id, user, c = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('HSETNX', P .. 'conns', id, c) == 1 then
    redis.call('SADD', P .. 'user:' .. user, id)
    redis.call('SADD', P .. 'edge:' .. edge, id)
    ev[#ev + 1] = '{"k":"added","c":' .. c .. '}'
  end
end
return {epoch, emit(), known and 1 or 0}
)lua";

// ARGV: epoch, edge, incarnation, ids. An edge removes only its own.
constexpr char kUnregister[] = R"lua(
local edge = ARGV[2]
touch(edge, ARGV[3])
local prefix = edge .. '-'
for i = 4, #ARGV do
  if string.sub(ARGV[i], 1, #prefix) == prefix then remove(ARGV[i], 'unreg', 0, '') end
end
return {epoch, emit(), 0}
)lua";

// ARGV: epoch, edge, incarnation.
constexpr char kHeartbeat[] = R"lua(
local known = touch(ARGV[2], ARGV[3])
return {epoch, emit(), known and 1 or 0}
)lua";

// ARGV: epoch, user, connection id, code, reason, set ban (1/0), ban ms.
// The ban goes before the kicks, so a client that reconnects at once is refused.
constexpr char kKick[] = R"lua(
local user, id, code, why = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local n = 0
local banned = '0'
if id ~= '' then
  if remove(id, 'kicked', code, why) then n = 1 end
else
  if ARGV[6] == '1' then
    local b = tonumber(ARGV[7])
    local u = '0'
    if b > 0 then
      u = ms(now + b)
      redis.call('HSET', P .. 'bans', user, u)
    else
      redis.call('HDEL', P .. 'bans', user)
    end
    ev[#ev + 1] = '{"k":"banned","user":' .. q(user) .. ',"until":' .. u .. '}'
  end
  for _, cid in ipairs(redis.call('SMEMBERS', P .. 'user:' .. user)) do
    if remove(cid, 'kicked', code, why) then n = n + 1 end
  end
  local b = redis.call('HGET', P .. 'bans', user)
  if b and tonumber(b) > now then banned = b end
end
return {epoch, emit(), n, banned}
)lua";

// ARGV: epoch, user, code, reason.
constexpr char kForget[] = R"lua(
local user = ARGV[2]
local n = 0
for _, cid in ipairs(redis.call('SMEMBERS', P .. 'user:' .. user)) do
  if remove(cid, 'kicked', ARGV[3], ARGV[4]) then n = n + 1 end
end
if redis.call('HDEL', P .. 'bans', user) == 1 then
  ev[#ev + 1] = '{"k":"banned","user":' .. q(user) .. ',"until":0}'
end
ev[#ev + 1] = '{"k":"forgotten","user":' .. q(user) .. '}'
return {epoch, emit(), n}
)lua";

// ARGV: epoch, lease ms. Idempotent: replicas may run it at once.
constexpr char kExpire[] = R"lua(
local n = 0
local cutoff = now - tonumber(ARGV[2])
for _, edge in ipairs(redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', '(' .. ms(cutoff))) do
  for _, id in ipairs(redis.call('SMEMBERS', P .. 'edge:' .. edge)) do
    if remove(id, 'lease', 0, '') then n = n + 1 end
  end
  redis.call('ZREM', P .. 'leases', edge)
  redis.call('HDEL', P .. 'edges', edge)
  ev[#ev + 1] = '{"k":"edge_down","edge":' .. q(edge) .. '}'
end
local bans = redis.call('HGETALL', P .. 'bans')
for i = 1, #bans, 2 do
  if tonumber(bans[i + 1]) <= now then redis.call('HDEL', P .. 'bans', bans[i]) end
end
return {epoch, emit(), n}
)lua";

// ARGV: epoch. Creates the epoch when missing; the snapshot itself is a
// MULTI/EXEC (ReadSnapshot).
constexpr char kEpoch[] = R"lua(
return epoch
)lua";

const RedisScript& Script(const char* body) {
  // One RedisScript (and SHA1) per body, made once.
  static auto* scripts = new std::vector<std::pair<const char*, RedisScript>>{
      {kRegister, RedisScript(absl::StrCat(kPrelude, kRegister))},
      {kUnregister, RedisScript(absl::StrCat(kPrelude, kUnregister))},
      {kHeartbeat, RedisScript(absl::StrCat(kPrelude, kHeartbeat))},
      {kKick, RedisScript(absl::StrCat(kPrelude, kKick))},
      {kForget, RedisScript(absl::StrCat(kPrelude, kForget))},
      {kExpire, RedisScript(absl::StrCat(kPrelude, kExpire))},
      {kEpoch, RedisScript(absl::StrCat(kPrelude, kEpoch))},
  };
  for (const auto& [key, script] : *scripts) {
    if (key == body) return script;
  }
  std::abort();
}

std::string CandidateEpoch() {
  thread_local std::mt19937_64 random(std::random_device{}());
  return absl::StrFormat("%016x", random());
}

absl::Status Unavailable(absl::string_view why) {
  return WithReason(absl::UnavailableError(absl::StrCat("registry unavailable: ", why)),
                    "REGISTRY_UNAVAILABLE");
}

std::string ConnectionJson(const ConnectionInfo& c) {
  json::object o;
  o["id"] = c.connection_id;
  o["user"] = c.user;
  o["edge"] = c.edge_id;
  o["at"] = c.connected_at_ms;
  o["ua"] = c.user_agent;
  o["ip"] = c.ip;
  return json::serialize(o);
}

json::value ParseJson(const std::string& text, bool* ok) {
  json::parse_options options;
  options.allow_invalid_utf8 = true;  // user agents are whatever clients sent
  boost::system::error_code error;
  json::value v = json::parse(text, error, {}, options);
  *ok = !error;
  return v;
}

std::string Str(const json::object& o, const char* key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->get_string()) : std::string();
}

int64_t Int(const json::object& o, const char* key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr) return 0;
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64()) return static_cast<int64_t>(v->get_uint64());
  if (v->is_double()) return static_cast<int64_t>(v->get_double());
  return 0;
}

ConnectionInfo ConnectionFrom(const json::value& v) {
  ConnectionInfo c;
  if (!v.is_object()) return c;
  const json::object& o = v.get_object();
  c.connection_id = Str(o, "id");
  c.user = Str(o, "user");
  c.edge_id = Str(o, "edge");
  c.connected_at_ms = Int(o, "at");
  c.user_agent = Str(o, "ua");
  c.ip = Str(o, "ip");
  return c;
}

absl::StatusOr<std::vector<FeedEvent>> ParseEvents(const std::string& text) {
  bool ok = false;
  json::value v = ParseJson(text, &ok);
  if (!ok || !v.is_array()) return absl::DataLossError("feed entry is not a JSON array");
  std::vector<FeedEvent> events;
  for (const json::value& item : v.get_array()) {
    if (!item.is_object()) continue;
    const json::object& o = item.get_object();
    const std::string kind = Str(o, "k");
    FeedEvent e;
    if (kind == "added") {
      e.kind = FeedEvent::Kind::kAdded;
      e.connection = ConnectionFrom(o.contains("c") ? o.at("c") : json::value());
    } else if (kind == "removed") {
      e.kind = FeedEvent::Kind::kRemoved;
      e.connection = ConnectionFrom(o.contains("c") ? o.at("c") : json::value());
      const std::string r = Str(o, "r");
      e.reason = r == "kicked"  ? RemoveReason::kKicked
                 : r == "lease" ? RemoveReason::kLeaseExpired
                                : RemoveReason::kUnregistered;
      e.close_code = static_cast<int>(Int(o, "code"));
      e.close_reason = Str(o, "why");
    } else if (kind == "banned") {
      e.kind = FeedEvent::Kind::kBanned;
      e.connection.user = Str(o, "user");
      e.ban_until_ms = Int(o, "until");
    } else if (kind == "forgotten") {
      e.kind = FeedEvent::Kind::kForgotten;
      e.connection.user = Str(o, "user");
    } else if (kind == "edge_up") {
      e.kind = FeedEvent::Kind::kEdgeUp;
      e.connection.edge_id = Str(o, "edge");
      e.incarnation = Str(o, "inc");
    } else if (kind == "edge_down") {
      e.kind = FeedEvent::Kind::kEdgeDown;
      e.connection.edge_id = Str(o, "edge");
    } else {
      continue;  // from a newer version: not ours to apply
    }
    events.push_back(std::move(e));
  }
  return events;
}

int64_t ToInt(const RedisReply& r) {
  if (r.type == RedisReply::Type::kInteger) return r.integer;
  int64_t v = 0;
  return absl::SimpleAtoi(r.str, &v) ? v : 0;
}

// "ms-seq" stream ids, compared as numbers.
std::pair<uint64_t, uint64_t> EntryId(const std::string& id) {
  std::pair<uint64_t, uint64_t> out{0, 0};
  const size_t dash = id.find('-');
  absl::SimpleAtoi(id.substr(0, dash), &out.first);
  if (dash != std::string::npos) absl::SimpleAtoi(id.substr(dash + 1), &out.second);
  return out;
}

// Everything at one point of the feed, as [epoch, epoch_at, now (ms),
// seq, last feed id, connection JSONs, bans (user, until...), edges (id,
// incarnation...)]. One MULTI/EXEC: atomic like a script, but Redis sends
// the large hash itself. A Lua script copies every value into a Lua table
// and back, about four times as long, and Redis answers nobody meanwhile
// (a million connections: 6 s instead of 1.7 s).
absl::StatusOr<RedisReply> ReadSnapshot(RedisConnection& connection) {
  absl::StatusOr<RedisReply> epoch = connection.Eval(Script(kEpoch), {CandidateEpoch()});
  if (!epoch.ok()) return epoch.status();
  if (epoch->is_error()) return absl::InternalError(epoch->str);
  const std::vector<std::vector<std::string>> commands = {
      {"GET", "chat:epoch"},
      {"GET", "chat:epoch_at"},
      {"TIME"},
      {"GET", "chat:seq"},
      {"XREVRANGE", kFeed, "+", "-", "COUNT", "1"},
      {"HVALS", "chat:conns"},
      {"HGETALL", "chat:bans"},
      {"HGETALL", "chat:edges"},
  };
  absl::StatusOr<RedisReply> begun = connection.Command({"MULTI"});
  if (!begun.ok()) return begun.status();
  if (begun->is_error()) return absl::InternalError(begun->str);
  for (const auto& command : commands) {
    // Not queued (an error, or a fresh connection after the old one broke
    // ran it at once): no snapshot this time.
    absl::StatusOr<RedisReply> queued = connection.Command(command);
    if (!queued.ok()) return queued.status();
    if (queued->type != RedisReply::Type::kStatus || queued->str != "QUEUED") {
      (void)connection.Command({"DISCARD"});
      return absl::InternalError(
          absl::StrCat("snapshot: ", command[0], " not queued: ", queued->str));
    }
  }
  absl::StatusOr<RedisReply> r = connection.Command({"EXEC"});
  if (!r.ok()) return r.status();
  if (r->type != RedisReply::Type::kArray || r->elements.size() != commands.size()) {
    return absl::InternalError(absl::StrCat("snapshot: EXEC answered ", r->str));
  }
  std::vector<RedisReply>& e = r->elements;
  // Lost between the two steps (Redis restarted empty): the next try makes one.
  if (e[0].type != RedisReply::Type::kString) return absl::UnavailableError("no epoch yet");
  auto text = [](std::string s) {
    RedisReply t;
    t.type = RedisReply::Type::kString;
    t.str = std::move(s);
    return t;
  };
  const RedisReply& time = e[2];
  if (time.elements.size() != 2) return absl::InternalError("snapshot: unexpected TIME");
  const int64_t now_ms = ToInt(time.elements[0]) * 1000 + ToInt(time.elements[1]) / 1000;
  const RedisReply& last = e[4];
  std::string last_id = "0-0";
  if (!last.elements.empty() && !last.elements[0].elements.empty()) {
    last_id = last.elements[0].elements[0].str;
  }
  RedisReply out;
  out.type = RedisReply::Type::kArray;
  out.elements.reserve(8);
  out.elements.push_back(std::move(e[0]));
  out.elements.push_back(text(e[1].type == RedisReply::Type::kString ? e[1].str : "0"));
  out.elements.push_back(text(absl::StrCat(now_ms)));
  out.elements.push_back(text(e[3].type == RedisReply::Type::kString ? e[3].str : "0"));
  out.elements.push_back(text(std::move(last_id)));
  out.elements.push_back(std::move(e[5]));
  out.elements.push_back(std::move(e[6]));
  out.elements.push_back(std::move(e[7]));
  return out;
}

absl::StatusOr<SharedSnapshot> ParseSnapshot(const RedisReply& r, int64_t warmup_ms,
                                             std::string* last_id, int64_t* seq) {
  if (r.type != RedisReply::Type::kArray || r.elements.size() != 8) {
    return absl::DataLossError("unexpected snapshot reply");
  }
  SharedSnapshot snapshot;
  snapshot.epoch = r.elements[0].str;
  const int64_t epoch_at = ToInt(r.elements[1]);
  const int64_t now = ToInt(r.elements[2]);
  snapshot.warmup_left_ms = std::max<int64_t>(0, epoch_at + warmup_ms - now);
  *seq = ToInt(r.elements[3]);
  *last_id = r.elements[4].str;
  for (const RedisReply& c : r.elements[5].elements) {
    bool ok = false;
    json::value v = ParseJson(c.str, &ok);
    if (ok) snapshot.connections.push_back(ConnectionFrom(v));
  }
  const auto& bans = r.elements[6].elements;
  for (size_t i = 0; i + 1 < bans.size(); i += 2) {
    snapshot.bans.push_back({bans[i].str, ToInt(bans[i + 1])});
  }
  const auto& edges = r.elements[7].elements;
  for (size_t i = 0; i + 1 < edges.size(); i += 2) {
    snapshot.edges.emplace_back(edges[i].str, edges[i + 1].str);
  }
  return snapshot;
}

}  // namespace

RedisRegistry::RedisRegistry(RedisRegistryOptions options)
    : options_(std::move(options)), pool_(options_.target, options_.timeouts, options_.pool_size) {}

RedisRegistry::~RedisRegistry() { Stop(); }

void RedisRegistry::Start(FeedSink* sink) {
  sink_ = sink;
  tailer_ = std::thread([this] { TailLoop(); });
}

void RedisRegistry::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (tailer_.joinable()) tailer_.join();
}

absl::StatusOr<SharedWrite> RedisRegistry::Run(const RedisScript& script,
                                               std::vector<std::string> args) {
  args.insert(args.begin(), CandidateEpoch());
  // Element 1 of every script's reply is the feed entry it wrote or, when it
  // changed nothing, the feed's last one ('' only while the feed is empty).
  // Either way the script touched the lease table or the connections, which
  // a replica should hold before the answer.
  absl::StatusOr<RedisReply> reply = pool_.EvalWrite(
      script, args,
      [](const RedisReply& r) {
        return r.type == RedisReply::Type::kArray && r.elements.size() > 1 &&
               !r.elements[1].str.empty();
      },
      options_.replica_ack_timeout);
  if (!reply.ok()) {
    if (options_.metrics != nullptr) options_.metrics->unavailable.Increment();
    return Unavailable(reply.status().message());
  }
  if (reply->is_error()) return absl::InternalError(absl::StrCat("redis script: ", reply->str));
  if (reply->type != RedisReply::Type::kArray || reply->elements.size() < 3) {
    return absl::InternalError("redis script: unexpected reply");
  }
  SharedWrite write;
  write.position.epoch = reply->elements[0].str;
  write.position.entry = reply->elements[1].str;
  write.count = static_cast<int>(ToInt(reply->elements[2]));
  write.lease_known = write.count != 0;
  if (reply->elements.size() > 3) write.banned_until_ms = ToInt(reply->elements[3]);
  absl::MutexLock lock(&mu_);
  // Redis started afresh (or failed over to a server with another epoch):
  // the tailer must take a snapshot rather than wait for the feed.
  if (write.position.epoch != applied_epoch_) resync_asked_ = true;
  return write;
}

absl::StatusOr<SharedWrite> RedisRegistry::Register(
    const std::string& edge_id, const std::string& incarnation,
    const std::vector<ConnectionInfo>& connections) {
  std::vector<std::string> args = {edge_id, incarnation};
  args.reserve(2 + 3 * connections.size());
  for (const auto& c : connections) {
    args.push_back(c.connection_id);
    args.push_back(c.user);
    args.push_back(ConnectionJson(c));
  }
  return Run(Script(kRegister), std::move(args));
}

absl::StatusOr<SharedWrite> RedisRegistry::Unregister(const std::string& edge_id,
                                                      const std::string& incarnation,
                                                      const std::vector<std::string>& ids) {
  std::vector<std::string> args = {edge_id, incarnation};
  args.insert(args.end(), ids.begin(), ids.end());
  return Run(Script(kUnregister), std::move(args));
}

absl::StatusOr<SharedWrite> RedisRegistry::Heartbeat(const std::string& edge_id,
                                                     const std::string& incarnation) {
  return Run(Script(kHeartbeat), {edge_id, incarnation});
}

absl::StatusOr<SharedWrite> RedisRegistry::Kick(const std::string& user,
                                                const std::string& connection_id, int code,
                                                const std::string& reason, bool set_ban,
                                                int64_t ban_ms) {
  return Run(Script(kKick), {user, connection_id, absl::StrCat(code), reason, set_ban ? "1" : "0",
                             absl::StrCat(ban_ms)});
}

absl::StatusOr<SharedWrite> RedisRegistry::Forget(const std::string& user, int code,
                                                  const std::string& reason) {
  return Run(Script(kForget), {user, absl::StrCat(code), reason});
}

absl::StatusOr<SharedWrite> RedisRegistry::ExpireLeases(int64_t lease_ms) {
  return Run(Script(kExpire), {absl::StrCat(lease_ms)});
}

absl::Status RedisRegistry::AwaitApplied(const FeedPosition& position) {
  const auto target = EntryId(position.entry);
  absl::MutexLock lock(&mu_);
  auto applied = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return stop_ || (applied_epoch_ == position.epoch &&
                     (position.entry.empty() || EntryId(applied_entry_) >= target));
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&applied), options_.apply_timeout) || stop_) {
    if (options_.metrics != nullptr) options_.metrics->unavailable.Increment();
    return Unavailable("this replica has not caught up with the shared feed");
  }
  return absl::OkStatus();
}

bool RedisRegistry::MayExpireLeases() {
  absl::MutexLock lock(&mu_);
  return absl::Now() - connected_since_ >= absl::Milliseconds(options_.lease_timeout_ms);
}

void RedisRegistry::PauseFeedForTest(bool paused) {
  absl::MutexLock lock(&mu_);
  paused_ = paused;
}

int64_t RedisRegistry::resyncs() const {
  absl::MutexLock lock(&mu_);
  return resyncs_;
}

bool RedisRegistry::SleepUnlessStopped(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  auto stopped = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_; };
  mu_.AwaitWithTimeout(absl::Condition(&stopped), d);
  return stop_;
}

void RedisRegistry::TailLoop() {
  // Its own connection: XREAD BLOCK holds it, and its timeout must outlast
  // the block. (A server that died closes the socket: this bounds only a
  // silent one.) Not by much: a hung primary holds this thread for the
  // timeout, and meanwhile neither a Sentinel failover is followed (this
  // replica's writes fail, not caught up) nor a shutdown finishes. A
  // snapshot of many connections takes Redis a while to build before the
  // first byte comes: that command alone gets a longer timeout. Connecting
  // (Sentinel, ROLE) keeps the ordinary one: the Sentinels may name the
  // hung primary a few more times before they fail over.
  const absl::Duration read_timeout = options_.block + 2 * options_.timeouts.command;
  const absl::Duration snapshot_timeout =
      options_.block + std::max(options_.timeouts.command, absl::Seconds(5));
  RedisConnection connection(options_.target, options_.timeouts);
  connection.SetCommandTimeout(read_timeout);
  const int64_t warmup_ms =
      options_.new_epoch_warmup_ms < 0 ? options_.lease_timeout_ms : options_.new_epoch_warmup_ms;
  const std::string block_ms = absl::StrCat(absl::ToInt64Milliseconds(options_.block));
  bool resync = true;
  std::string last_id;
  int64_t last_n = 0;
  bool warned = false;  // once per outage (and at start)
  auto lost = [&](absl::string_view why) {
    absl::MutexLock lock(&mu_);
    if (!warned) {
      spdlog::warn("registry feed {}: {} (retrying)",
                   connected_since_ == absl::InfiniteFuture() ? "not reachable" : "lost",
                   std::string(why));
      warned = true;
    }
    connected_since_ = absl::InfiniteFuture();
    if (options_.metrics != nullptr) options_.metrics->up.Set(0);
  };
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto go = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_ || !paused_; };
      mu_.Await(absl::Condition(&go));
      if (stop_) return;
      if (resync_asked_) resync = true;
      resync_asked_ = false;
    }
    if (resync) {
      connection.SetCommandTimeout(snapshot_timeout);
      absl::StatusOr<RedisReply> reply = ReadSnapshot(connection);
      connection.SetCommandTimeout(read_timeout);
      absl::StatusOr<SharedSnapshot> snapshot =
          !reply.ok()         ? absl::Status(reply.status())
          : reply->is_error() ? absl::InternalError(reply->str)
                              : ParseSnapshot(*reply, warmup_ms, &last_id, &last_n);
      if (!snapshot.ok()) {
        lost(snapshot.status().message());
        if (SleepUnlessStopped(absl::Milliseconds(200))) return;
        continue;
      }
      sink_->ApplySnapshot(*snapshot);
      resync = false;
      absl::MutexLock lock(&mu_);
      warned = false;
      if (connected_since_ == absl::InfiniteFuture()) {
        spdlog::info("registry feed followed on {} (epoch {})", connection.peer(), snapshot->epoch);
        connected_since_ = absl::Now();
      }
      applied_epoch_ = snapshot->epoch;
      applied_entry_ = last_id;
      ++resyncs_;
      if (options_.metrics != nullptr) {
        options_.metrics->up.Set(1);
        options_.metrics->resyncs.Increment();
      }
      continue;
    }
    absl::StatusOr<RedisReply> reply = connection.Command(
        {"XREAD", "COUNT", "1000", "BLOCK", block_ms, "STREAMS", kFeed, last_id});
    if (!reply.ok()) {
      lost(reply.status().message());
      resync = true;
      continue;
    }
    if (reply->is_error()) {
      spdlog::warn("registry feed: {}", reply->str);
      resync = true;
      if (SleepUnlessStopped(absl::Milliseconds(200))) return;
      continue;
    }
    if (reply->type != RedisReply::Type::kArray || reply->elements.empty()) continue;
    {
      absl::MutexLock lock(&mu_);
      if (paused_) continue;  // read again from last_id once resumed
    }
    // [[stream, [[id, [field, value, ...]], ...]]]
    const RedisReply& stream = reply->elements[0];
    if (stream.elements.size() < 2) continue;
    for (const RedisReply& entry : stream.elements[1].elements) {
      if (entry.elements.size() < 2) continue;
      int64_t n = 0;
      std::string events;
      const auto& fields = entry.elements[1].elements;
      for (size_t i = 0; i + 1 < fields.size(); i += 2) {
        if (fields[i].str == "n") n = ToInt(fields[i + 1]);
        if (fields[i].str == "ev") events = fields[i + 1].str;
      }
      if (n != last_n + 1) {
        // Entries were trimmed while this replica was behind (or Redis lost
        // some in a failover): start again from a snapshot.
        spdlog::warn("registry feed gap (entry {} after {}): resynchronising", n, last_n);
        resync = true;
        break;
      }
      absl::StatusOr<std::vector<FeedEvent>> parsed = ParseEvents(events);
      if (parsed.ok()) {
        sink_->ApplyFeed(*parsed);
      } else {
        spdlog::error("registry feed entry {}: {}", entry.elements[0].str,
                      parsed.status().ToString());
      }
      last_id = entry.elements[0].str;
      last_n = n;
    }
    absl::MutexLock lock(&mu_);
    applied_entry_ = last_id;
  }
}

}  // namespace chat::connection
