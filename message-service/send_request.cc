#include "message-service/send_request.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "boost/json/parse.hpp"
#include "common/grpc_status.h"
#include "common/names.h"

namespace chat::message {
namespace {

absl::Status Invalid(std::string message, absl::string_view reason) {
  return WithReason(absl::InvalidArgumentError(std::move(message)), reason);
}

bool IsTypeChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == ':' || c == '/' || c == '-';
}

}  // namespace

absl::Status CheckName(std::string_view name, std::string_view field) {
  if (absl::Status s = ValidateUserName(name); !s.ok()) {
    return Invalid(absl::StrCat(std::string(field), ": ", s.message()), kInvalidName);
  }
  return absl::OkStatus();
}

absl::Status CheckType(std::string_view type) {
  if (type.size() > kMaxTypeBytes) {
    return Invalid(absl::StrCat("type is longer than ", kMaxTypeBytes, " bytes"), kInvalidType);
  }
  for (char c : type) {
    if (!IsTypeChar(c)) return Invalid("type may hold only [A-Za-z0-9._:/-]", kInvalidType);
  }
  return absl::OkStatus();
}

absl::Status CheckMetadata(std::string_view metadata) {
  if (metadata.empty()) return absl::OkStatus();
  if (metadata.size() > kMaxMetadataBytes) {
    return Invalid(absl::StrCat("metadata is longer than ", kMaxMetadataBytes, " bytes"),
                   kInvalidMetadata);
  }
  boost::json::error_code ec;
  // The edge parses it again with the same (default) options to embed it in
  // frames: what passes here, it reads there.
  boost::json::value value =
      boost::json::parse(boost::json::string_view(metadata.data(), metadata.size()), ec);
  if (ec) return Invalid("metadata is not valid JSON", kInvalidMetadata);
  if (!value.is_object()) return Invalid("metadata must be a JSON object", kInvalidMetadata);
  return absl::OkStatus();
}

absl::Status CheckSendFields(const chat::v1::SendRequest& request, size_t max_message_bytes) {
  if (absl::Status s = CheckName(request.sent_by(), "sent_by"); !s.ok()) return s;
  if (request.message().size() > max_message_bytes) {
    return Invalid(absl::StrCat("message is longer than ", max_message_bytes, " bytes"),
                   kMessageTooLong);
  }
  if (!IsValidUtf8(request.message()))
    return Invalid("message is not valid UTF-8", kInvalidMessage);
  if (request.idempotency_key().size() > kMaxIdempotencyKeyBytes) {
    return Invalid(
        absl::StrCat("idempotency_key is longer than ", kMaxIdempotencyKeyBytes, " bytes"),
        kInvalidIdempotencyKey);
  }
  if (absl::Status s = CheckType(request.type()); !s.ok()) return s;
  return CheckMetadata(request.metadata());
}

absl::StatusOr<std::vector<std::string>> CheckPublicSend(const chat::v1::SendRequest& request,
                                                         size_t max_message_bytes) {
  if (absl::Status s = CheckSendFields(request, max_message_bytes); !s.ok()) return s;
  // The per-recipient keys are made with it (RecipientKey).
  if (request.idempotency_key().find('\x1f') != std::string::npos) {
    return Invalid("idempotency_key must not contain U+001F", kInvalidIdempotencyKey);
  }
  if (request.recipients().empty()) {
    if (request.send_to().empty()) {
      return Invalid("one of send_to and recipients is required", kInvalidRecipients);
    }
    if (absl::Status s = CheckName(request.send_to(), "send_to"); !s.ok()) return s;
    return std::vector<std::string>{request.send_to()};
  }
  if (!request.send_to().empty()) {
    return Invalid("send_to and recipients are exclusive", kInvalidRecipients);
  }
  if (request.recipients_size() > kMaxRecipients) {
    return Invalid(absl::StrCat("more than ", kMaxRecipients, " recipients"), kInvalidRecipients);
  }
  std::vector<std::string> out;
  out.reserve(request.recipients_size());
  absl::flat_hash_set<std::string_view> seen;
  for (int i = 0; i < request.recipients_size(); ++i) {
    const std::string& name = request.recipients(i);
    if (absl::Status s = CheckName(name, absl::StrCat("recipients[", i, "]")); !s.ok()) return s;
    if (!seen.insert(name).second) {
      return Invalid(absl::StrCat("recipients[", i, "] repeats an earlier name"),
                     kInvalidRecipients);
    }
    out.push_back(name);
  }
  return out;
}

std::string RecipientKey(const std::string& key, const std::string& recipient) {
  if (key.empty()) return "";
  return absl::StrCat(key, "\x1f", recipient);
}

}  // namespace chat::message
