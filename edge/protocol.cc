#include "edge/protocol.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "boost/json/monotonic_resource.hpp"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "boost/json/static_resource.hpp"
#include "common/names.h"

namespace chat::edge {
namespace json = boost::json;

namespace {
// Memory for one frame's JSON tree: 2 KiB on the stack, then heap blocks
// from one monotonic resource, released together when the frame is parsed or
// encoded. A tree is built and dropped within one call; what outlives it is
// copied out (the request id) or serialized, so no per-node malloc/free.
class Scratch {
 public:
  json::storage_ptr get() { return json::storage_ptr(&resource_); }

 private:
  alignas(std::max_align_t) unsigned char buffer_[2048];
  json::monotonic_resource resource_{buffer_, sizeof buffer_};
};
}  // namespace

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kBadRequest:
      return "bad_request";
    case ErrorCode::kUnknownAction:
      return "unknown_action";
    case ErrorCode::kForbidden:
      return "forbidden";
    case ErrorCode::kUnknownUser:
      return "unknown_user";
    case ErrorCode::kRecipientOffline:
      return "recipient_offline";
    case ErrorCode::kRateLimited:
      return "rate_limited";
    case ErrorCode::kUnavailable:
      return "unavailable";
    case ErrorCode::kInternal:
      return "internal";
  }
  return "internal";
}

bool IsTemporary(ErrorCode code) {
  return code == ErrorCode::kRateLimited || code == ErrorCode::kUnavailable ||
         code == ErrorCode::kInternal;
}

ErrorCode SendErrorCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kNotFound:
      return ErrorCode::kUnknownUser;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kPermissionDenied:
      return ErrorCode::kBadRequest;
    default:
      return ErrorCode::kUnavailable;
  }
}

namespace {

RequestError Bad(std::string message, RequestId id = std::nullopt) {
  return {ErrorCode::kBadRequest, std::move(message), std::move(id)};
}

// A required string field; `what` names it in errors.
std::optional<std::string> StringField(const json::object& obj, std::string_view key, bool required,
                                       std::string* error) {
  const json::value* v = obj.if_contains(key);
  if (v == nullptr || v->is_null()) {
    if (required) *error = absl::StrCat("'", std::string(key), "' is required");
    return std::nullopt;
  }
  if (!v->is_string()) {
    *error = absl::StrCat("'", std::string(key), "' must be a string");
    return std::nullopt;
  }
  return std::string(v->get_string());
}

std::variant<Request, RequestError> ParseSend(const json::object& obj, RequestId id) {
  std::string error;
  SendAction send;
  auto to = StringField(obj, "send_to", true, &error);
  if (!to) return Bad(error, std::move(id));
  if (absl::Status s = ValidateUserName(*to); !s.ok()) {
    return Bad(absl::StrCat("'send_to': ", s.message()), std::move(id));
  }
  auto message = StringField(obj, "message", true, &error);
  if (!message) return Bad(error, std::move(id));
  auto sent_by = StringField(obj, "sent_by", false, &error);
  if (!error.empty()) return Bad(error, std::move(id));
  auto key = StringField(obj, "idempotency_key", false, &error);
  if (!error.empty()) return Bad(error, std::move(id));
  if (key) {
    if (key->empty() || key->size() > kMaxIdempotencyKeyBytes) {
      return Bad(absl::StrCat("'idempotency_key' must be 1 to ", kMaxIdempotencyKeyBytes, " bytes"),
                 std::move(id));
    }
    send.idempotency_key = std::move(*key);
  }
  send.send_to = std::move(*to);
  send.message = std::move(*message);
  send.sent_by = std::move(sent_by);
  return Request{std::move(id), std::move(send)};
}

// An optional integer field that must be >= `min`; huge values saturate.
// Returns false (with `error` set) for anything that is not such an integer.
bool IntField(const json::object& obj, std::string_view key, int64_t min, int64_t* out,
              std::string* error) {
  const json::value* v = obj.if_contains(key);
  if (v == nullptr || v->is_null()) return true;
  int64_t n;
  if (v->is_int64()) {
    n = v->get_int64();
  } else if (v->is_uint64()) {
    n = INT64_MAX;
  } else {
    *error = absl::StrCat("'", std::string(key), "' must be an integer");
    return false;
  }
  if (n < min) {
    *error = min == 0 ? absl::StrCat("'", std::string(key), "' must not be negative")
                      : absl::StrCat("'", std::string(key), "' must be at least ", min);
    return false;
  }
  *out = n;
  return true;
}

// `limit`: a positive integer, capped at `cap`.
bool LimitField(const json::object& obj, int cap, int* out, std::string* error) {
  int64_t n = *out;
  if (!IntField(obj, "limit", 1, &n, error)) return false;
  *out = static_cast<int>(std::min<int64_t>(n, cap));
  return true;
}

// A required, valid user name in `key`.
bool NameField(const json::object& obj, std::string_view key, std::string* out,
               std::string* error) {
  auto name = StringField(obj, key, true, error);
  if (!name) return false;
  if (absl::Status s = ValidateUserName(*name); !s.ok()) {
    *error = absl::StrCat("'", std::string(key), "': ", s.message());
    return false;
  }
  *out = std::move(*name);
  return true;
}

std::variant<Request, RequestError> ParseSync(const json::object& obj, RequestId id) {
  SyncAction sync;
  std::string error;
  if (!IntField(obj, "since", 0, &sync.since, &error) ||
      !LimitField(obj, kMaxPageLimit, &sync.limit, &error)) {
    return Bad(error, std::move(id));
  }
  auto epoch = StringField(obj, "epoch", false, &error);
  if (!error.empty()) return Bad(error, std::move(id));
  if (epoch) sync.epoch = std::move(*epoch);  // any other than the current one resets
  return Request{std::move(id), std::move(sync)};
}

std::variant<Request, RequestError> ParseHistory(const json::object& obj, RequestId id) {
  HistoryAction history;
  std::string error;
  if (!NameField(obj, "with", &history.with, &error) ||
      !IntField(obj, "before", 0, &history.before, &error) ||
      !LimitField(obj, kMaxPageLimit, &history.limit, &error)) {
    return Bad(error, std::move(id));
  }
  return Request{std::move(id), std::move(history)};
}

std::variant<Request, RequestError> ParseConversations(const json::object& obj, RequestId id) {
  ConversationsAction conversations;
  std::string error;
  if (!LimitField(obj, kMaxPageLimit, &conversations.limit, &error)) {
    return Bad(error, std::move(id));
  }
  auto after = StringField(obj, "after", false, &error);
  if (!error.empty()) return Bad(error, std::move(id));
  if (after) {
    if (after->size() > 256) return Bad("'after' is not a cursor this server gave", std::move(id));
    conversations.after = std::move(*after);
  }
  return Request{std::move(id), std::move(conversations)};
}

std::variant<Request, RequestError> ParseRead(const json::object& obj, RequestId id) {
  ReadAction read;
  std::string error;
  if (!NameField(obj, "with", &read.with, &error)) return Bad(error, std::move(id));
  if (obj.if_contains("seq") == nullptr || obj.at("seq").is_null()) {
    return Bad("'seq' is required", std::move(id));
  }
  if (!IntField(obj, "seq", 0, &read.seq, &error)) return Bad(error, std::move(id));
  return Request{std::move(id), std::move(read)};
}

std::variant<Request, RequestError> ParseUsers(const json::object& obj, RequestId id) {
  UsersAction users;
  if (const json::value* v = obj.if_contains("online_only"); v != nullptr && !v->is_null()) {
    if (!v->is_bool()) return Bad("'online_only' must be true or false", std::move(id));
    users.online_only = v->get_bool();
  }
  if (const json::value* v = obj.if_contains("limit"); v != nullptr && !v->is_null()) {
    if (!v->is_int64() && !v->is_uint64()) {
      return Bad("'limit' must be an integer", std::move(id));
    }
    const int64_t n = v->is_int64() ? v->get_int64() : kMaxUsersLimit + 1;
    if (n < 1) return Bad("'limit' must be at least 1", std::move(id));
    users.limit = static_cast<int>(std::min<int64_t>(n, kMaxUsersLimit));
  }
  std::string error;
  auto after = StringField(obj, "after", false, &error);
  if (!error.empty()) return Bad(error, std::move(id));
  if (after) users.after = std::move(*after);
  return Request{std::move(id), std::move(users)};
}

std::variant<Request, RequestError> ParseWatch(const json::object& obj, RequestId id) {
  const json::value* v = obj.if_contains("users");
  if (v == nullptr || !v->is_array()) {
    return Bad("'users' must be an array of names", std::move(id));
  }
  const json::array& arr = v->get_array();
  if (arr.size() > kMaxWatchUsers) {
    return Bad(absl::StrCat("'users' holds more than ", kMaxWatchUsers, " names"), std::move(id));
  }
  WatchAction watch;
  absl::flat_hash_set<std::string_view> seen;
  for (const json::value& u : arr) {
    if (!u.is_string()) return Bad("'users' must be an array of names", std::move(id));
    std::string_view name(u.get_string().data(), u.get_string().size());
    if (absl::Status s = ValidateUserName(name); !s.ok()) {
      return Bad(absl::StrCat("'users': ", s.message()), std::move(id));
    }
    if (seen.insert(name).second) watch.users.emplace_back(name);
  }
  return Request{std::move(id), std::move(watch)};
}

}  // namespace

std::variant<Request, RequestError> ParseRequest(std::string_view text) {
  json::error_code ec;
  json::parse_options options;
  options.max_depth = 16;
  Scratch scratch;
  json::value root =
      json::parse(json::string_view(text.data(), text.size()), ec, scratch.get(), options);
  if (ec) return Bad(absl::StrCat("not valid JSON: ", ec.message()));
  if (!root.is_object()) return Bad("a frame must be a JSON object");
  json::object& obj = root.get_object();

  RequestId id;
  if (json::value* v = obj.if_contains("request_id"); v != nullptr && !v->is_null()) {
    if (v->is_string()) {
      if (v->get_string().size() > kMaxRequestIdBytes) {
        return Bad(absl::StrCat("'request_id' is longer than ", kMaxRequestIdBytes, " bytes"));
      }
    } else if (!v->is_int64() && !v->is_uint64()) {
      return Bad("'request_id' must be a string or an integer");
    }
    id = json::value(*v, json::storage_ptr());  // outlives the scratch tree
  }
  const json::value* action = obj.if_contains("action");
  if (action == nullptr || !action->is_string()) {
    return Bad("'action' is missing or not a string", std::move(id));
  }
  const json::string& name = action->get_string();
  if (name == "send") return ParseSend(obj, std::move(id));
  if (name == "users") return ParseUsers(obj, std::move(id));
  if (name == "watch") return ParseWatch(obj, std::move(id));
  if (name == "ping") return Request{std::move(id), PingAction{}};
  if (name == "sync") return ParseSync(obj, std::move(id));
  if (name == "history") return ParseHistory(obj, std::move(id));
  if (name == "conversations") return ParseConversations(obj, std::move(id));
  if (name == "read") return ParseRead(obj, std::move(id));
  if (name == "refresh") {
    const json::value* token = obj.if_contains("token");
    if (token == nullptr || !token->is_string() || token->get_string().empty()) {
      return Bad("'token' must be a non-empty string", std::move(id));
    }
    return Request{std::move(id), RefreshAction{std::string(token->get_string())}};
  }
  // Cut at a character boundary: a split UTF-8 sequence would make the error
  // frame itself invalid UTF-8 (found by tests/fuzz/protocol_fuzz).
  size_t cut = std::min<size_t>(name.size(), 64);
  while (cut > 0 && cut < name.size() && (static_cast<uint8_t>(name[cut]) & 0xC0) == 0x80) --cut;
  std::string shown(name.data(), cut);
  return RequestError{ErrorCode::kUnknownAction, absl::StrCat("no action named '", shown, "'"),
                      std::move(id)};
}

namespace {
void PutId(json::object& obj, const RequestId& id) {
  if (id.has_value()) obj["request_id"] = *id;
}
std::string Serialize(const json::object& obj) { return json::serialize(obj); }
json::string_view Sv(std::string_view s) { return json::string_view(s.data(), s.size()); }
}  // namespace

std::string EncodeHello(std::string_view user, std::string_view connection_id,
                        std::string_view server, const Limits& limits, std::string_view epoch) {
  Scratch scratch;
  json::object obj(scratch.get());
  obj["action"] = "hello";
  obj["protocol"] = kProtocolVersion;
  if (!epoch.empty()) obj["epoch"] = Sv(epoch);
  obj["user"] = Sv(user);
  obj["connection_id"] = Sv(connection_id);
  obj["server"] = Sv(server);
  json::object l(obj.storage());
  l["max_message_bytes"] = limits.max_message_bytes;
  l["messages_per_second"] = limits.messages_per_second;
  l["idle_timeout_s"] = limits.idle_timeout_s;
  obj["limits"] = std::move(l);
  return Serialize(obj);
}

std::string EncodeError(ErrorCode code, std::string_view message, const RequestId& request_id) {
  Scratch scratch;
  json::object obj(scratch.get());
  obj["action"] = "error";
  obj["code"] = Sv(ErrorCodeName(code));
  obj["message"] = Sv(message);
  PutId(obj, request_id);
  obj["temporary"] = IsTemporary(code);
  return Serialize(obj);
}

std::string EncodeSent(const RequestId& request_id, const SendResult& sent) {
  Scratch scratch;
  json::object obj(scratch.get());
  obj["action"] = "sent";
  PutId(obj, request_id);
  obj["id"] = Sv(sent.id);
  obj["ts"] = sent.ts_ms;
  obj["delivered"] = sent.delivered;
  if (!sent.conversation.empty()) {
    obj["conversation"] = Sv(sent.conversation);
    obj["seq"] = sent.seq;
    obj["useq"] = sent.useq;
  }
  if (sent.duplicate) obj["duplicate"] = true;
  return Serialize(obj);
}

namespace {
void PutMessage(json::object& obj, const MessageObject& m) {
  obj["sent_by"] = Sv(m.sent_by);
  obj["send_to"] = Sv(m.send_to);
  obj["message"] = Sv(m.message);
  obj["id"] = Sv(m.id);
  obj["ts"] = m.ts_ms;
  if (!m.conversation.empty()) {
    obj["conversation"] = Sv(m.conversation);
    obj["seq"] = m.seq;
    obj["useq"] = m.useq;
  }
  // Only on messages sent through the public gRPC API: no WebSocket user can
  // set them, and frames without them are exactly what version 1 clients got.
  if (m.server) obj["server"] = true;
  if (!m.type.empty()) obj["type"] = Sv(m.type);
  if (!m.metadata.empty()) {
    // Embedded as the object it is (message-service accepted only objects);
    // anything else is left out rather than sent as a string.
    json::error_code ec;
    json::value metadata = json::parse(Sv(m.metadata), ec, obj.storage());
    if (!ec && metadata.is_object()) obj["metadata"] = std::move(metadata);
  }
}
json::array MessageArray(const std::vector<MessageObject>& messages, size_t begin, size_t end,
                         const json::storage_ptr& sp) {
  json::array arr(sp);
  arr.reserve(end - begin);
  for (size_t i = begin; i < end; ++i) {
    json::object o(sp);
    PutMessage(o, messages[i]);
    arr.push_back(std::move(o));
  }
  return arr;
}
}  // namespace

std::string EncodeDelivery(const MessageObject& message) {
  Scratch scratch;
  json::object obj(scratch.get());
  obj["action"] = "send";
  PutMessage(obj, message);
  return Serialize(obj);
}

std::string EncodeSynced(SyncReply* reply, const RequestId& request_id) {
  // Escaping can make a page larger than the store measured: drop messages
  // from the end until it fits (one always stays).
  for (;;) {
    Scratch scratch;
    json::object obj(scratch.get());
    obj["action"] = "synced";
    obj["messages"] = MessageArray(reply->messages, 0, reply->messages.size(), obj.storage());
    obj["useq"] = reply->useq;
    obj["more"] = reply->more;
    if (!reply->epoch.empty()) obj["epoch"] = Sv(reply->epoch);
    if (reply->reset) obj["reset"] = true;
    PutId(obj, request_id);
    std::string out = Serialize(obj);
    if (out.size() <= kMaxReplyBytes || reply->messages.size() <= 1) return out;
    reply->messages.resize(reply->messages.size() * 3 / 4);
    reply->useq = reply->messages.back().useq;
    reply->more = true;
  }
}

std::string EncodeHistory(HistoryReply reply, const RequestId& request_id) {
  // Newest kept: trimming drops the oldest and says there are more.
  size_t begin = 0;
  const size_t end = reply.messages.size();
  for (;;) {
    Scratch scratch;
    json::object obj(scratch.get());
    obj["action"] = "history";
    obj["with"] = Sv(reply.with);
    obj["conversation"] = Sv(reply.conversation);
    obj["messages"] = MessageArray(reply.messages, begin, end, obj.storage());
    obj["more"] = reply.more || begin > 0;
    PutId(obj, request_id);
    std::string out = Serialize(obj);
    if (out.size() <= kMaxReplyBytes || end - begin <= 1) return out;
    begin += std::max<size_t>(1, (end - begin) / 4);
  }
}

std::string EncodeConversations(const ConversationsReply& reply, const RequestId& request_id) {
  size_t n = reply.items.size();
  for (;;) {
    Scratch scratch;
    json::object obj(scratch.get());
    obj["action"] = "conversations";
    json::array items(obj.storage());
    items.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      const ConversationEntry& c = reply.items[i];
      json::object o(obj.storage());
      o["with"] = Sv(c.with);
      o["conversation"] = Sv(c.conversation);
      json::object last(obj.storage());
      PutMessage(last, c.last);
      o["last"] = std::move(last);
      o["unread"] = c.unread;
      o["read_seq"] = c.read_seq;
      o["peer_read_seq"] = c.peer_read_seq;
      o["delivered_seq"] = c.delivered_seq;
      items.push_back(std::move(o));
    }
    obj["items"] = std::move(items);
    // Trimmed to fit: the next page starts after the last item shown (the
    // cursor is that item's newest useq).
    if (n < reply.items.size()) {
      obj["next"] = absl::StrCat(reply.items[n - 1].last.useq);
    } else if (!reply.next.empty()) {
      obj["next"] = Sv(reply.next);
    }
    PutId(obj, request_id);
    std::string out = Serialize(obj);
    if (out.size() <= kMaxReplyBytes || n <= 1) return out;
    n = n * 3 / 4;
  }
}

std::string EncodeReadMark(std::string_view with, int64_t seq, const RequestId& request_id) {
  Scratch scratch;
  json::object obj(scratch.get());
  obj["action"] = "read";
  obj["with"] = Sv(with);
  obj["seq"] = seq;
  PutId(obj, request_id);
  return Serialize(obj);
}

std::string EncodeReceipt(const Receipt& receipt) {
  Scratch scratch;
  json::object obj(scratch.get());
  obj["action"] = "receipt";
  obj["conversation"] = Sv(receipt.conversation);
  obj["user"] = Sv(receipt.user);
  if (receipt.read_seq > 0) obj["read_seq"] = receipt.read_seq;
  if (receipt.delivered_seq > 0) obj["delivered_seq"] = receipt.delivered_seq;
  obj["ts"] = receipt.ts_ms;
  return Serialize(obj);
}

std::string EncodeUsers(const std::vector<Contact>& contacts, std::string_view next,
                        const RequestId& request_id) {
  Scratch scratch;
  json::object obj(scratch.get());
  obj["action"] = "users";
  json::array arr(obj.storage());
  arr.reserve(contacts.size());
  for (const auto& c : contacts) {
    json::object o(obj.storage());
    o["name"] = Sv(c.name);
    o["status"] = c.status;
    arr.push_back(std::move(o));
  }
  obj["contacts"] = std::move(arr);
  if (!next.empty()) obj["next"] = Sv(next);
  PutId(obj, request_id);
  return Serialize(obj);
}

std::string EncodeWatching(const std::vector<std::string>& users, const RequestId& request_id) {
  Scratch scratch;
  json::object obj(scratch.get());
  obj["action"] = "watching";
  json::array arr(obj.storage());
  for (const auto& u : users) arr.emplace_back(Sv(u));
  obj["users"] = std::move(arr);
  PutId(obj, request_id);
  return Serialize(obj);
}

std::string EncodePresence(std::string_view name, bool status, int64_t ts_ms) {
  Scratch scratch;
  json::object obj(scratch.get());
  obj["action"] = "presence";
  obj["name"] = Sv(name);
  obj["status"] = status;
  obj["ts"] = ts_ms;
  return Serialize(obj);
}

std::string EncodeRefreshed(int64_t expires_at_s, const RequestId& request_id) {
  Scratch scratch;
  json::object obj(scratch.get());
  obj["action"] = "refreshed";
  if (expires_at_s > 0) obj["expires_at"] = expires_at_s;
  PutId(obj, request_id);
  return Serialize(obj);
}

std::string EncodePong(int64_t ts_ms, const RequestId& request_id) {
  Scratch scratch;
  json::object obj(scratch.get());
  obj["action"] = "pong";
  obj["ts"] = ts_ms;
  PutId(obj, request_id);
  return Serialize(obj);
}

}  // namespace chat::edge
