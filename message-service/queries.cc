#include "message-service/queries.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "message-service/send_request.h"

namespace chat::message {
namespace {

absl::Status CheckUser(const std::string& user, const char* field) {
  return CheckName(user, field);
}

absl::Status Invalid(std::string message, absl::string_view reason) {
  return WithReason(absl::InvalidArgumentError(std::move(message)), reason);
}

absl::Status CheckPosition(int64_t value, const char* field) {
  if (value < 0) return Invalid(absl::StrCat(field, " must not be negative"), "INVALID_POSITION");
  return absl::OkStatus();
}

absl::StatusOr<int> Limit(int requested, int default_limit) {
  if (requested < 0) return Invalid("limit must not be negative", "INVALID_LIMIT");
  if (requested > kMaxPageLimit) {
    return Invalid(absl::StrCat("limit is over ", kMaxPageLimit), "INVALID_LIMIT");
  }
  if (requested == 0) return default_limit;
  return requested;
}

// NOT_FOUND (USER_NOT_FOUND) unless the store knows `user`: the store knows
// everyone who ever connected or was written to, until erased.
absl::Status CheckKnown(store::MessageStore* store, const std::string& user) {
  absl::StatusOr<bool> known = store->HasUser(user);
  if (!known.ok()) return known.status();
  if (!*known) return WithReason(absl::NotFoundError("no user by that name"), kUserNotFound);
  return absl::OkStatus();
}

absl::Status CheckPeer(store::MessageStore* store, const std::string& peer) {
  return CheckKnown(store, peer);
}

}  // namespace

void ToProto(const store::Message& m, chat::v1::StoredMessage* out) {
  out->set_id(m.id);
  out->set_conversation(m.conversation);
  out->set_seq(m.seq);
  out->set_useq(m.useq);
  out->set_sent_by(m.sent_by);
  out->set_send_to(m.send_to);
  out->set_message(m.text);
  out->set_ts_ms(m.ts_ms);
  out->set_server(m.server);
  out->set_type(m.type);
  out->set_metadata(m.metadata);
}

absl::StatusOr<chat::v1::SyncResponse> RunSync(store::MessageStore* store,
                                               const chat::v1::SyncRequest& request,
                                               const std::string& epoch, bool check_user) {
  if (absl::Status s = CheckUser(request.user(), "user"); !s.ok()) return s;
  if (absl::Status s = CheckPosition(request.since(), "since"); !s.ok()) return s;
  absl::StatusOr<int> limit = Limit(request.limit(), kMaxPageLimit);
  if (!limit.ok()) return limit.status();
  if (check_user) {
    if (absl::Status s = CheckKnown(store, request.user()); !s.ok()) return s;
  }
  int64_t since = request.since();
  bool reset = !request.epoch().empty() && request.epoch() != epoch;
  if (!reset && since > 0) {
    absl::StatusOr<store::UserMarks> marks = store->Marks(request.user());
    if (!marks.ok()) return marks.status();
    reset = since > marks->last_useq;
  }
  if (reset) since = 0;
  absl::StatusOr<store::SyncPage> page =
      store->Sync(request.user(), since, *limit, kMaxReplyTextBytes);
  if (!page.ok()) return page.status();
  chat::v1::SyncResponse out;
  for (const auto& m : page->messages) ToProto(m, out.add_messages());
  out.set_useq(page->useq);
  out.set_more(page->more);
  out.set_epoch(epoch);
  out.set_reset(reset);
  return out;
}

absl::StatusOr<chat::v1::SyncResponse> RunUnread(store::MessageStore* store,
                                                 const chat::v1::UnreadRequest& request) {
  if (absl::Status s = CheckUser(request.user(), "user"); !s.ok()) return s;
  absl::StatusOr<int> limit = Limit(std::min(request.limit(), kMaxPageLimit), 100);
  if (!limit.ok()) return limit.status();
  absl::StatusOr<store::SyncPage> page = store->Unread(
      request.user(), std::max<int64_t>(request.after(), 0), *limit, kMaxReplyTextBytes / 2);
  if (!page.ok()) return page.status();
  chat::v1::SyncResponse out;
  for (const auto& m : page->messages) ToProto(m, out.add_messages());
  out.set_useq(page->useq);
  out.set_more(page->more);
  return out;
}

absl::StatusOr<chat::v1::HistoryResponse> RunHistory(store::MessageStore* store,
                                                     const chat::v1::HistoryRequest& request,
                                                     bool check_user) {
  if (absl::Status s = CheckUser(request.user(), "user"); !s.ok()) return s;
  if (absl::Status s = CheckUser(request.with(), "with"); !s.ok()) return s;
  if (absl::Status s = CheckPosition(request.before(), "before"); !s.ok()) return s;
  absl::StatusOr<int> limit = Limit(request.limit(), 50);
  if (!limit.ok()) return limit.status();
  if (check_user) {
    if (absl::Status s = CheckKnown(store, request.user()); !s.ok()) return s;
  }
  if (absl::Status s = CheckPeer(store, request.with()); !s.ok()) return s;
  absl::StatusOr<store::HistoryPage> page =
      store->History(request.user(), request.with(), request.before(), *limit, kMaxReplyTextBytes);
  if (!page.ok()) return page.status();
  chat::v1::HistoryResponse out;
  out.set_with(request.with());
  out.set_conversation(page->conversation.empty()
                           ? store::ConversationId(request.user(), request.with())
                           : page->conversation);
  for (const auto& m : page->messages) ToProto(m, out.add_messages());
  out.set_more(page->more);
  return out;
}

absl::StatusOr<chat::v1::ConversationsResponse> RunConversations(
    store::MessageStore* store, const chat::v1::ConversationsRequest& request, bool check_user) {
  if (absl::Status s = CheckUser(request.user(), "user"); !s.ok()) return s;
  absl::StatusOr<int> limit = Limit(request.limit(), 50);
  if (!limit.ok()) return limit.status();
  if (request.after().size() > 256) return Invalid("after is not a cursor", "INVALID_CURSOR");
  if (check_user) {
    if (absl::Status s = CheckKnown(store, request.user()); !s.ok()) return s;
  }
  absl::StatusOr<store::ConversationsPage> page =
      store->Conversations(request.user(), request.after(), *limit, kMaxReplyTextBytes);
  if (!page.ok()) return page.status();
  chat::v1::ConversationsResponse out;
  for (const auto& item : page->items) {
    auto* o = out.add_items();
    o->set_with(item.with);
    o->set_conversation(item.conversation);
    ToProto(item.last, o->mutable_last());
    o->set_unread(item.unread);
    o->set_read_seq(item.read_seq);
    o->set_peer_read_seq(item.peer_read_seq);
    o->set_delivered_seq(item.delivered_seq);
  }
  out.set_next(page->next);
  return out;
}

absl::StatusOr<chat::v1::MarkReadResponse> RunMarkRead(store::MessageStore* store,
                                                       const chat::v1::MarkReadRequest& request,
                                                       std::vector<store::MarkChange>* changes,
                                                       bool check_user) {
  if (absl::Status s = CheckUser(request.user(), "user"); !s.ok()) return s;
  if (absl::Status s = CheckUser(request.with(), "with"); !s.ok()) return s;
  if (absl::Status s = CheckPosition(request.seq(), "seq"); !s.ok()) return s;
  if (check_user) {
    if (absl::Status s = CheckKnown(store, request.user()); !s.ok()) return s;
  }
  if (absl::Status s = CheckPeer(store, request.with()); !s.ok()) return s;
  absl::StatusOr<store::MessageStore::ReadResult> read =
      store->MarkRead(request.user(), request.with(), request.seq());
  if (!read.ok()) return read.status();
  chat::v1::MarkReadResponse out;
  out.set_conversation(read->conversation);
  out.set_read_seq(read->read_seq);
  for (auto& c : read->changes) changes->push_back(std::move(c));
  return out;
}

}  // namespace chat::message
