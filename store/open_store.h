#ifndef CHAT_STORE_OPEN_STORE_H_
#define CHAT_STORE_OPEN_STORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "store/message_store.h"
#include "store/user_store.h"

namespace chat::store {

struct StoreOptions {
  // SQLite: false = synchronous=NORMAL in WAL mode (a process crash loses
  // nothing; a power loss may lose the last commits); true = FULL (fsync on
  // every commit: survives power loss). PostgreSQL follows the server's own
  // synchronous_commit.
  bool fsync = false;
  // How long a call may wait for the engine (PostgreSQL connect, SQLite
  // busy lock) before it fails as UNAVAILABLE.
  int timeout_ms = 5000;
  // SQLite: log written between checkpoints. A thread of the store copies
  // it back into the database beside the writer (store/sqlite_checkpointer.h);
  // at twice this the writer finishes the copy itself.
  int64_t wal_checkpoint_bytes = 16 << 20;
};

// `url`: "sqlite:PATH" (the file and its directory are created) or a
// "postgresql://..." / "postgres://..." URL (tables are created if missing).
// The store reconnects by itself after an engine failure: a call that fails
// returns UNAVAILABLE, a later one tries again.
absl::StatusOr<std::unique_ptr<MessageStore>> OpenMessageStore(const std::string& url,
                                                               const StoreOptions& options);
absl::StatusOr<std::unique_ptr<UserStore>> OpenUserStore(const std::string& url,
                                                         const StoreOptions& options);

}  // namespace chat::store

#endif  // CHAT_STORE_OPEN_STORE_H_
