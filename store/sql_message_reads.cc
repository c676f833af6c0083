// The read side of SqlMessageStore: a user's stream, one conversation's
// history and the list of conversations, each bounded by a count and bytes.
#include <algorithm>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "store/sql_message_rows.h"
#include "store/sql_message_store.h"

namespace chat::store {
namespace {

using Mode = SqlDb::Mode;

absl::Status CheckPage(const std::string& user, int limit) {
  if (user.empty()) return absl::InvalidArgumentError("empty user name");
  if (limit <= 0) return absl::InvalidArgumentError("limit must be positive");
  return absl::OkStatus();
}

// Decides, item by item, whether a page takes one more: at most `limit`
// items and about `max_bytes`, but always the first.
class PageBudget {
 public:
  PageBudget(int limit, size_t max_bytes) : limit_(limit), max_bytes_(max_bytes) {}
  bool Take(size_t bytes) {
    if (taken_ >= limit_ || (taken_ > 0 && used_ + bytes > max_bytes_)) return false;
    ++taken_;
    used_ += bytes;
    return true;
  }

 private:
  int limit_;
  size_t max_bytes_;
  int taken_ = 0;
  size_t used_ = 0;
};

}  // namespace

absl::StatusOr<SyncPage> SqlMessageStore::Sync(const std::string& user, int64_t since, int limit,
                                               size_t max_bytes) {
  return StreamPage(absl::StrCat("SELECT s.useq, ", sql::kMessageColumns,
                                 " FROM stream_entries s JOIN messages m ON m.id = s.message_id"
                                 " WHERE s.owner = $1 AND s.useq > $2 ORDER BY s.useq LIMIT $3"),
                    user, since, limit, max_bytes);
}

absl::StatusOr<SyncPage> SqlMessageStore::Unread(const std::string& user, int64_t after, int limit,
                                                 size_t max_bytes) {
  return StreamPage(
      absl::StrCat("SELECT s.useq, ", sql::kMessageColumns,
                   " FROM stream_entries s JOIN messages m ON m.id = s.message_id"
                   " JOIN members mb ON mb.owner = s.owner AND mb.conversation = m.conversation"
                   " WHERE s.owner = $1 AND s.useq > $2 AND m.send_to = $1"
                   " AND m.sent_by <> $1 AND m.seq > mb.read_seq ORDER BY s.useq LIMIT $3"),
      user, after, limit, max_bytes);
}

absl::StatusOr<SyncPage> SqlMessageStore::StreamPage(const std::string& sql,
                                                     const std::string& user, int64_t since,
                                                     int limit, size_t max_bytes) {
  STORE_RETURN_IF_ERROR(CheckPage(user, limit));
  if (since < 0) return absl::InvalidArgumentError("negative useq");
  SyncPage page;
  STORE_RETURN_IF_ERROR(db_->Transaction(Mode::kRead, [&]() -> absl::Status {
    page = SyncPage{};
    page.useq = since;
    // One more than the limit tells whether there is more.
    absl::StatusOr<SqlRows> rows = db_->Run(sql, {user, since, int64_t{limit} + 1});
    if (!rows.ok()) return rows.status();
    PageBudget budget(limit, max_bytes);
    for (size_t r = 0; r < rows->size(); ++r) {
      Message m = sql::ReadMessage(*rows, r, 1, rows->Int(r, 0));
      if (!budget.Take(sql::ApproxBytes(m))) {
        page.more = true;
        break;
      }
      page.useq = m.useq;
      page.messages.push_back(std::move(m));
    }
    return absl::OkStatus();
  }));
  return page;
}

absl::StatusOr<HistoryPage> SqlMessageStore::History(const std::string& user,
                                                     const std::string& peer, int64_t before,
                                                     int limit, size_t max_bytes) {
  STORE_RETURN_IF_ERROR(CheckPage(user, limit));
  if (peer.empty()) return absl::InvalidArgumentError("empty peer name");
  HistoryPage page;
  page.conversation = ConversationId(user, peer);
  const int64_t below = before <= 0 ? std::numeric_limits<int64_t>::max() : before;
  STORE_RETURN_IF_ERROR(db_->Transaction(Mode::kRead, [&]() -> absl::Status {
    page.messages.clear();
    page.more = false;
    absl::StatusOr<SqlRows> rows =
        db_->Run(absl::StrCat("SELECT CASE WHEN m.sent_by = $2 THEN m.sender_useq"
                              " ELSE m.recipient_useq END, ",
                              sql::kMessageColumns,
                              " FROM messages m WHERE m.conversation = $1 AND m.seq < $3"
                              " ORDER BY m.seq DESC LIMIT $4"),
                 {page.conversation, user, below, int64_t{limit} + 1});
    if (!rows.ok()) return rows.status();
    PageBudget budget(limit, max_bytes);
    for (size_t r = 0; r < rows->size(); ++r) {
      Message m = sql::ReadMessage(*rows, r, 1, rows->Int(r, 0));
      if (!budget.Take(sql::ApproxBytes(m))) {
        page.more = true;
        break;
      }
      page.messages.push_back(std::move(m));
    }
    std::reverse(page.messages.begin(), page.messages.end());
    return absl::OkStatus();
  }));
  return page;
}

absl::StatusOr<ConversationsPage> SqlMessageStore::Conversations(const std::string& user,
                                                                 const std::string& after,
                                                                 int limit, size_t max_bytes) {
  STORE_RETURN_IF_ERROR(CheckPage(user, limit));
  // The cursor is the user's useq of the last item's last message.
  int64_t below = std::numeric_limits<int64_t>::max();
  if (!after.empty() && (!absl::SimpleAtoi(after, &below) || below < 0)) {
    return absl::InvalidArgumentError("bad conversations cursor");
  }
  ConversationsPage page;
  STORE_RETURN_IF_ERROR(db_->Transaction(Mode::kRead, [&]() -> absl::Status {
    page = ConversationsPage{};
    // pm is the peer's row (the same row in a self-conversation). The last
    // message is the one at the conversation's last seq; a conversation
    // whose last message was pruned is not listed. Every conversation of
    // the user is looked at to order them (no index is kept up to date per
    // message for this, a rare query).
    const std::string last_useq =
        "CASE WHEN m.sent_by = $1 THEN m.sender_useq ELSE m.recipient_useq END";
    absl::StatusOr<SqlRows> rows = db_->Run(
        absl::StrCat("SELECT ", last_useq,
                     ", mb.peer, mb.read_seq, pm.read_seq, pm.delivered_seq, ",
                     sql::kMessageColumns,
                     " FROM members mb JOIN conversations c ON c.id = mb.conversation"
                     " JOIN members pm ON pm.owner = mb.peer AND pm.conversation = mb.conversation"
                     " JOIN messages m ON m.conversation = c.id AND m.seq = c.last_seq"
                     " WHERE mb.owner = $1 AND ",
                     last_useq, " < $2 ORDER BY 1 DESC LIMIT $3"),
        {user, below, int64_t{limit} + 1});
    if (!rows.ok()) return rows.status();
    PageBudget budget(limit, max_bytes);
    for (size_t r = 0; r < rows->size(); ++r) {
      ConversationSummary s;
      s.with = rows->Text(r, 1);
      s.last = sql::ReadMessage(*rows, r, 5, rows->Int(r, 0));
      s.conversation = s.last.conversation;
      if (!budget.Take(sql::ApproxBytes(s.last) + s.with.size() + 120)) {
        page.next = absl::StrCat(page.items.back().last.useq);
        break;
      }
      if (s.with == user) {  // self: everything read and delivered
        s.read_seq = s.peer_read_seq = s.delivered_seq = s.last.seq;
      } else {
        s.read_seq = rows->Int(r, 2);
        s.peer_read_seq = rows->Int(r, 3);
        s.delivered_seq = rows->Int(r, 4);
        absl::StatusOr<SqlRows> unread = db_->Run(
            "SELECT COUNT(*) FROM messages WHERE conversation = $1 AND sent_by = $2 AND seq > $3",
            {s.conversation, s.with, s.read_seq});
        if (!unread.ok()) return unread.status();
        s.unread = unread->Int(0, 0);
      }
      page.items.push_back(std::move(s));
    }
    return absl::OkStatus();
  }));
  return page;
}

}  // namespace chat::store
