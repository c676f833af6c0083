#ifndef CHAT_MESSAGE_SERVICE_QUERIES_H_
#define CHAT_MESSAGE_SERVICE_QUERIES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "chat/v1/chat.pb.h"
#include "store/message_store.h"

// The store reads of protocol version 2 (sync, unread pushes, history,
// conversations, read marks), shared by the EdgeLink and the public unary
// RPCs: request validation and limits, then the store, then the reply.
// Refusals are INVALID_ARGUMENT with an ErrorInfo reason (INVALID_NAME,
// INVALID_LIMIT, INVALID_POSITION, INVALID_CURSOR); an unknown `with`, and
// with `check_user` an unknown `user`, NOT_FOUND (USER_NOT_FOUND). Edges read
// for their own connections' users, who always exist: they skip that check.
namespace chat::message {

// Replies stay under 1 MiB once encoded as JSON; the store is asked for less
// text than that so escaping and the message fields fit.
inline constexpr size_t kMaxReplyTextBytes = 512 << 10;
inline constexpr int kMaxPageLimit = 500;

absl::StatusOr<chat::v1::SyncResponse> RunSync(store::MessageStore* store,
                                               const chat::v1::SyncRequest& request,
                                               const std::string& epoch, bool check_user = false);
absl::StatusOr<chat::v1::SyncResponse> RunUnread(store::MessageStore* store,
                                                 const chat::v1::UnreadRequest& request);
absl::StatusOr<chat::v1::HistoryResponse> RunHistory(store::MessageStore* store,
                                                     const chat::v1::HistoryRequest& request,
                                                     bool check_user = false);
absl::StatusOr<chat::v1::ConversationsResponse> RunConversations(
    store::MessageStore* store, const chat::v1::ConversationsRequest& request,
    bool check_user = false);
// `changes` receives the marks that moved (for receipts).
absl::StatusOr<chat::v1::MarkReadResponse> RunMarkRead(store::MessageStore* store,
                                                       const chat::v1::MarkReadRequest& request,
                                                       std::vector<store::MarkChange>* changes,
                                                       bool check_user = false);

void ToProto(const store::Message& m, chat::v1::StoredMessage* out);

}  // namespace chat::message

#endif  // CHAT_MESSAGE_SERVICE_QUERIES_H_
