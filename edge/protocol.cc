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

namespace {

RequestError Bad(std::string message, RequestId id = std::nullopt) {
  return {ErrorCode::kBadRequest, std::move(message), std::move(id)};
}

// A required string field; `what` names it in errors.
std::optional<std::string> StringField(const json::object& obj, std::string_view key,
                                       bool required, std::string* error) {
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
  send.send_to = std::move(*to);
  send.message = std::move(*message);
  send.sent_by = std::move(sent_by);
  return Request{std::move(id), std::move(send)};
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
  json::value root = json::parse(json::string_view(text.data(), text.size()), ec,
                                 json::storage_ptr(), options);
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
    id = std::move(*v);
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
                        std::string_view server, const Limits& limits) {
  json::object obj;
  obj["action"] = "hello";
  obj["protocol"] = 1;
  obj["user"] = Sv(user);
  obj["connection_id"] = Sv(connection_id);
  obj["server"] = Sv(server);
  json::object l;
  l["max_message_bytes"] = limits.max_message_bytes;
  l["messages_per_second"] = limits.messages_per_second;
  l["idle_timeout_s"] = limits.idle_timeout_s;
  obj["limits"] = std::move(l);
  return Serialize(obj);
}

std::string EncodeError(ErrorCode code, std::string_view message, const RequestId& request_id) {
  json::object obj;
  obj["action"] = "error";
  obj["code"] = Sv(ErrorCodeName(code));
  obj["message"] = Sv(message);
  PutId(obj, request_id);
  obj["temporary"] = IsTemporary(code);
  return Serialize(obj);
}

std::string EncodeSent(const RequestId& request_id, std::string_view id, int64_t ts_ms,
                       int delivered) {
  json::object obj;
  obj["action"] = "sent";
  PutId(obj, request_id);
  obj["id"] = Sv(id);
  obj["ts"] = ts_ms;
  obj["delivered"] = delivered;
  return Serialize(obj);
}

std::string EncodeDelivery(std::string_view sent_by, std::string_view send_to,
                           std::string_view message, std::string_view id, int64_t ts_ms) {
  json::object obj;
  obj["action"] = "send";
  obj["sent_by"] = Sv(sent_by);
  obj["send_to"] = Sv(send_to);
  obj["message"] = Sv(message);
  obj["id"] = Sv(id);
  obj["ts"] = ts_ms;
  return Serialize(obj);
}

std::string EncodeUsers(const std::vector<Contact>& contacts, std::string_view next,
                        const RequestId& request_id) {
  json::object obj;
  obj["action"] = "users";
  json::array arr;
  arr.reserve(contacts.size());
  for (const auto& c : contacts) {
    json::object o;
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
  json::object obj;
  obj["action"] = "watching";
  json::array arr;
  for (const auto& u : users) arr.emplace_back(Sv(u));
  obj["users"] = std::move(arr);
  PutId(obj, request_id);
  return Serialize(obj);
}

std::string EncodePresence(std::string_view name, bool status, int64_t ts_ms) {
  json::object obj;
  obj["action"] = "presence";
  obj["name"] = Sv(name);
  obj["status"] = status;
  obj["ts"] = ts_ms;
  return Serialize(obj);
}

std::string EncodeRefreshed(int64_t expires_at_s, const RequestId& request_id) {
  json::object obj;
  obj["action"] = "refreshed";
  if (expires_at_s > 0) obj["expires_at"] = expires_at_s;
  PutId(obj, request_id);
  return Serialize(obj);
}

std::string EncodePong(int64_t ts_ms, const RequestId& request_id) {
  json::object obj;
  obj["action"] = "pong";
  obj["ts"] = ts_ms;
  PutId(obj, request_id);
  return Serialize(obj);
}

}  // namespace chat::edge
