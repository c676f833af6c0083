#ifndef CHAT_STORE_SQLITE_WAL_BATCH_H_
#define CHAT_STORE_SQLITE_WAL_BATCH_H_

namespace chat::store {

// The name of a SQLite VFS that is the default one, except that a WAL file's
// writes of one transaction go out as one write: SQLite writes every frame as
// two calls (its 24-byte header, then the page), so a commit that changed 50
// pages costs 100 system calls; this layer gathers them in memory and writes
// them with one pwrite when the commit frame's page arrives (SQLite marks
// that frame's header with the database size). Nothing is held past the
// commit: when COMMIT returns, the frames are in the file exactly as without
// this layer, so a process killed right after loses nothing more. It also
// writes what it holds before any read, sync, size query, truncation or
// close of the file, and beyond 4 MiB. Registered on first use; thread-safe.
const char* WalBatchVfsName();

}  // namespace chat::store

#endif  // CHAT_STORE_SQLITE_WAL_BATCH_H_
