#ifndef CHAT_STORE_POSTGRES_STORE_H_
#define CHAT_STORE_POSTGRES_STORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "store/open_store.h"
#include "store/sql_db.h"

// The shared engine: several message-service replicas on one PostgreSQL.
namespace chat::store {

// Connects to `url` (a libpq "postgresql://" URI) within options.timeout_ms;
// statements are cut off after options.timeout_ms too. A lost connection
// fails the call in progress (UNAVAILABLE) and is re-established by the
// next transaction; deadlocks and unique-key races are retried inside.
absl::StatusOr<std::unique_ptr<SqlDb>> OpenPostgresDb(const std::string& url,
                                                      const StoreOptions& options);

absl::StatusOr<std::unique_ptr<MessageStore>> OpenPostgresMessageStore(const std::string& url,
                                                                       const StoreOptions& options);
absl::StatusOr<std::unique_ptr<UserStore>> OpenPostgresUserStore(const std::string& url,
                                                                 const StoreOptions& options);

}  // namespace chat::store

#endif  // CHAT_STORE_POSTGRES_STORE_H_
