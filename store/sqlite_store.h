#ifndef CHAT_STORE_SQLITE_STORE_H_
#define CHAT_STORE_SQLITE_STORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "store/open_store.h"
#include "store/sql_db.h"

// The embedded engine: one SQLite file per store, WAL mode.
namespace chat::store {

// Opens (creating the file and its directory) `path`. synchronous=NORMAL,
// or FULL with options.fsync; a busy database is waited for up to
// options.timeout_ms. After an engine error the file is reopened by the
// next transaction.
absl::StatusOr<std::unique_ptr<SqlDb>> OpenSqliteDb(const std::string& path,
                                                    const StoreOptions& options);

absl::StatusOr<std::unique_ptr<MessageStore>> OpenSqliteMessageStore(const std::string& path,
                                                                     const StoreOptions& options);
absl::StatusOr<std::unique_ptr<UserStore>> OpenSqliteUserStore(const std::string& path,
                                                               const StoreOptions& options);

}  // namespace chat::store

#endif  // CHAT_STORE_SQLITE_STORE_H_
