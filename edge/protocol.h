#ifndef CHAT_EDGE_PROTOCOL_H_
#define CHAT_EDGE_PROTOCOL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "boost/json/value.hpp"
#include "edge/stored.h"

// The JSON side of the protocol (version 2): parsing client frames into typed requests and
// encoding every server frame. No sockets here.
namespace chat::edge {

enum class ErrorCode {
  kBadRequest,
  kUnknownAction,
  kForbidden,
  kUnknownUser,
  kRecipientOffline,
  kRateLimited,
  kUnavailable,
  kInternal,
};
std::string_view ErrorCodeName(ErrorCode code);
bool IsTemporary(ErrorCode code);
// The error a send fails with for message-service's canonical status code
// (not OK): NOT_FOUND is unknown_user, INVALID_ARGUMENT and PERMISSION_DENIED
// are bad_request, anything else is unavailable (temporary: retry). Nothing
// maps to recipient_offline any more (offline recipients get stored messages).
ErrorCode SendErrorCode(absl::StatusCode code);

inline constexpr size_t kMaxWatchUsers = 1000;
inline constexpr int kMaxUsersLimit = 1000;
inline constexpr size_t kMaxRequestIdBytes = 256;
inline constexpr int kProtocolVersion = 2;
inline constexpr size_t kMaxIdempotencyKeyBytes = 64;
inline constexpr int kMaxPageLimit = 500;  // sync, history, conversations
inline constexpr int kDefaultHistoryLimit = 50;
inline constexpr int kDefaultConversationsLimit = 50;
// Replies that carry stored messages stay under this once encoded.
inline constexpr size_t kMaxReplyBytes = 1 << 20;

struct SendAction {
  std::string send_to;
  std::string message;
  std::optional<std::string> sent_by;
  std::string idempotency_key;  // empty: none
};
struct UsersAction {
  bool online_only = false;
  int limit = kMaxUsersLimit;
  std::string after;
};
struct WatchAction {
  std::vector<std::string> users;  // deduplicated, in the order given
};
struct PingAction {};
// jwt mode: a fresh token for the same user, before the current one expires.
struct RefreshAction {
  std::string token;
};

// Version 2: stored messages.
struct SyncAction {
  int64_t since = 0;
  int limit = kMaxPageLimit;
  std::string epoch;  // empty: none given
};
struct HistoryAction {
  std::string with;
  int64_t before = 0;  // 0: from the newest
  int limit = kDefaultHistoryLimit;
};
struct ConversationsAction {
  int limit = kDefaultConversationsLimit;
  std::string after;
};
struct ReadAction {
  std::string with;
  int64_t seq = 0;
};

using Action = std::variant<SendAction, UsersAction, WatchAction, PingAction, RefreshAction,
                            SyncAction, HistoryAction, ConversationsAction, ReadAction>;

// `request_id` is a JSON string or integer, echoed back as it came.
using RequestId = std::optional<boost::json::value>;

struct Request {
  RequestId request_id;
  Action action;
};

struct RequestError {
  ErrorCode code;
  std::string message;
  RequestId request_id;  // when the frame was an object with a valid one
};

// Parses one text frame. Never throws.
std::variant<Request, RequestError> ParseRequest(std::string_view text);

struct Limits {
  size_t max_message_bytes;
  int messages_per_second;
  int idle_timeout_s;
};
struct Contact {
  std::string name;
  bool status;
};

// `epoch` empty: not known yet (the message store was unreachable).
std::string EncodeHello(std::string_view user, std::string_view connection_id,
                        std::string_view server, const Limits& limits, std::string_view epoch);
std::string EncodeError(ErrorCode code, std::string_view message, const RequestId& request_id);
// `sent` is an OK result; its status is not looked at.
std::string EncodeSent(const RequestId& request_id, const SendResult& sent);
// The live frame: {"action":"send", ...message object}.
std::string EncodeDelivery(const MessageObject& message);
// These trim their message lists (and set more) to stay under kMaxReplyBytes;
// EncodeSynced leaves `reply` as it was sent.
std::string EncodeSynced(SyncReply* reply, const RequestId& request_id);
std::string EncodeHistory(HistoryReply reply, const RequestId& request_id);
std::string EncodeConversations(const ConversationsReply& reply, const RequestId& request_id);
std::string EncodeReadMark(std::string_view with, int64_t seq, const RequestId& request_id);
std::string EncodeReceipt(const Receipt& receipt);
std::string EncodeUsers(const std::vector<Contact>& contacts, std::string_view next,
                        const RequestId& request_id);
std::string EncodeWatching(const std::vector<std::string>& users, const RequestId& request_id);
std::string EncodePresence(std::string_view name, bool status, int64_t ts_ms);
std::string EncodePong(int64_t ts_ms, const RequestId& request_id);
// expires_at_s 0: the new token does not expire.
std::string EncodeRefreshed(int64_t expires_at_s, const RequestId& request_id);

}  // namespace chat::edge

#endif  // CHAT_EDGE_PROTOCOL_H_
