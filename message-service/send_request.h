#ifndef CHAT_MESSAGE_SERVICE_SEND_REQUEST_H_
#define CHAT_MESSAGE_SERVICE_SEND_REQUEST_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "chat/v1/chat.pb.h"

// The checks of a SendRequest (chat.proto), shared by the edges' sends and
// the public API. Every refusal is INVALID_ARGUMENT with an ErrorInfo reason
// (common/grpc_status.h) and a message that never repeats the input.
namespace chat::message {

inline constexpr size_t kMaxIdempotencyKeyBytes = 64;
inline constexpr size_t kMaxTypeBytes = 64;
inline constexpr size_t kMaxMetadataBytes = 16 << 10;
inline constexpr int kMaxRecipients = 100;
inline constexpr int kMaxBatchSends = 100;
// A Batch fans out to at most this many messages (sends times recipients)
// and this much stored text: without it one call of 100 sends to 100
// recipients each could store 10,000 copies of 128 KiB.
inline constexpr int kMaxBatchMessages = 1000;
inline constexpr size_t kMaxBatchTextBytes = 32 << 20;

// Reasons of the refusals (ErrorInfo.reason).
inline constexpr char kInvalidName[] = "INVALID_NAME";
inline constexpr char kMessageTooLong[] = "MESSAGE_TOO_LONG";
inline constexpr char kInvalidMessage[] = "INVALID_MESSAGE";
inline constexpr char kInvalidIdempotencyKey[] = "INVALID_IDEMPOTENCY_KEY";
inline constexpr char kInvalidType[] = "INVALID_TYPE";
inline constexpr char kInvalidMetadata[] = "INVALID_METADATA";
inline constexpr char kInvalidRecipients[] = "INVALID_RECIPIENTS";
inline constexpr char kTooManySends[] = "TOO_MANY_SENDS";
inline constexpr char kUserNotFound[] = "USER_NOT_FOUND";

// A user name field (`field` names it in the message): INVALID_NAME.
absl::Status CheckName(std::string_view name, std::string_view field);

// `type`: empty (none) or 1-64 bytes of [A-Za-z0-9._:/-].
absl::Status CheckType(std::string_view type);
// `metadata`: empty (none) or a JSON object of at most 16 KiB.
absl::Status CheckMetadata(std::string_view metadata);

// Everything but the recipients: sent_by, message, idempotency_key, type,
// metadata.
absl::Status CheckSendFields(const chat::v1::SendRequest& request, size_t max_message_bytes);

// The recipients of a public send: send_to alone, or `recipients` (1-100
// distinct valid names) alone. Checks the fields too.
absl::StatusOr<std::vector<std::string>> CheckPublicSend(const chat::v1::SendRequest& request,
                                                         size_t max_message_bytes);

// The idempotency key stored for `recipient` of a multi-recipient send: the
// caller's key applies per recipient, so each recipient's message holds its
// own key ("<key>\x1f<recipient>"; the unit separator cannot be part of a
// name). Empty when the caller gave none.
std::string RecipientKey(const std::string& key, const std::string& recipient);

}  // namespace chat::message

#endif  // CHAT_MESSAGE_SERVICE_SEND_REQUEST_H_
