#ifndef CHAT_STORE_SQL_MESSAGE_ROWS_H_
#define CHAT_STORE_SQL_MESSAGE_ROWS_H_

#include <cstddef>
#include <cstdint>

#include "store/message_store.h"
#include "store/sql_db.h"

// Shared by the SQL message store's files: how a message is selected and
// read back, and how big a reply holding it is taken to be.
namespace chat::store::sql {

// Selected after one leading column (the requesting user's useq).
inline constexpr char kMessageColumns[] =
    "m.id, m.conversation, m.seq, m.sent_by, m.send_to, m.body, m.ts_ms, m.server, m.type,"
    " m.metadata";

// Reads kMessageColumns starting at column `first`.
inline Message ReadMessage(const SqlRows& rows, size_t row, int first, int64_t useq) {
  Message m;
  m.id = rows.Text(row, first);
  m.conversation = rows.Text(row, first + 1);
  m.seq = rows.Int(row, first + 2);
  m.useq = useq;
  m.sent_by = rows.Text(row, first + 3);
  m.send_to = rows.Text(row, first + 4);
  m.text = rows.Text(row, first + 5);
  m.ts_ms = rows.Int(row, first + 6);
  m.server = rows.Int(row, first + 7) != 0;
  m.type = rows.Text(row, first + 8);
  m.metadata = rows.Text(row, first + 9);
  return m;
}

// About the bytes a message takes in a JSON reply: its strings plus the
// field names, numbers and punctuation of a message object.
inline size_t ApproxBytes(const Message& m) {
  return m.id.size() + m.conversation.size() + m.sent_by.size() + m.send_to.size() + m.text.size() +
         m.type.size() + m.metadata.size() + 160;
}

// An idempotency key dedupes while its message is younger than this.
inline constexpr int64_t kIdempotencyWindowMs = 24LL * 3600 * 1000;

}  // namespace chat::store::sql

#endif  // CHAT_STORE_SQL_MESSAGE_ROWS_H_
