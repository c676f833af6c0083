#include "store/sqlite_wal_batch.h"

#include <sqlite3.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <new>
#include <string>

namespace chat::store {
namespace {

constexpr char kName[] = "chat-wal-batch";
constexpr size_t kMaxHeld = 4 << 20;
constexpr size_t kMaxWrite = 64 << 10;
constexpr int kFrameHeaderBytes = 24;

sqlite3_vfs* g_base = nullptr;  // the default VFS we wrap
sqlite3_vfs g_vfs;

// Our file: these fields, then the base VFS's file at `real`.
struct File {
  sqlite3_file base;  // pMethods: ours
  sqlite3_file* real;
  bool wal;
  std::string* held;  // the WAL's writes not yet passed on, from offset `held_at`
  sqlite3_int64 held_at;
  bool commit_header;  // the last write held was a commit frame's header
};

File* Of(sqlite3_file* f) { return reinterpret_cast<File*>(f); }

int Flush(File* f) {
  if (f->held == nullptr || f->held->empty()) return SQLITE_OK;
  int rc = SQLITE_OK;
  // The unix VFS writes at most 128 KiB per call (it masks larger sizes).
  for (size_t done = 0; done < f->held->size() && rc == SQLITE_OK; done += kMaxWrite) {
    const size_t n = std::min(kMaxWrite, f->held->size() - done);
    rc = f->real->pMethods->xWrite(f->real, f->held->data() + done, static_cast<int>(n),
                                   f->held_at + static_cast<sqlite3_int64>(done));
  }
  f->held->clear();
  f->commit_header = false;
  return rc;
}

int Close(sqlite3_file* file) {
  File* f = Of(file);
  const int flushed = Flush(f);
  const int rc = f->real->pMethods != nullptr ? f->real->pMethods->xClose(f->real) : SQLITE_OK;
  delete f->held;
  f->held = nullptr;
  return flushed != SQLITE_OK ? flushed : rc;
}

int Read(sqlite3_file* file, void* buffer, int amount, sqlite3_int64 offset) {
  File* f = Of(file);
  if (int rc = Flush(f); rc != SQLITE_OK) return rc;
  return f->real->pMethods->xRead(f->real, buffer, amount, offset);
}

int Write(sqlite3_file* file, const void* data, int amount, sqlite3_int64 offset) {
  File* f = Of(file);
  if (!f->wal) return f->real->pMethods->xWrite(f->real, data, amount, offset);
  std::string& held = *f->held;
  const sqlite3_int64 held_end = f->held_at + static_cast<sqlite3_int64>(held.size());
  const char* bytes = static_cast<const char*>(data);
  if (!held.empty() && offset >= f->held_at && offset + amount <= held_end) {
    // A frame of this transaction written again in place.
    std::memcpy(held.data() + (offset - f->held_at), bytes, amount);
    return SQLITE_OK;
  }
  if (held.empty() || offset == held_end) {
    if (held.empty()) f->held_at = offset;
    // The commit frame: its header carries the database size (bytes 4-7),
    // and its page follows it.
    const bool was_commit_header = f->commit_header;
    held.append(bytes, amount);
    f->commit_header = amount == kFrameHeaderBytes &&
                       (bytes[4] != 0 || bytes[5] != 0 || bytes[6] != 0 || bytes[7] != 0);
    if (was_commit_header || held.size() >= kMaxHeld) return Flush(f);
    return SQLITE_OK;
  }
  // Anywhere else: what is held first, then this one as it is.
  if (int rc = Flush(f); rc != SQLITE_OK) return rc;
  return f->real->pMethods->xWrite(f->real, data, amount, offset);
}

int Truncate(sqlite3_file* file, sqlite3_int64 size) {
  File* f = Of(file);
  if (int rc = Flush(f); rc != SQLITE_OK) return rc;
  return f->real->pMethods->xTruncate(f->real, size);
}

int Sync(sqlite3_file* file, int flags) {
  File* f = Of(file);
  if (int rc = Flush(f); rc != SQLITE_OK) return rc;
  return f->real->pMethods->xSync(f->real, flags);
}

int FileSize(sqlite3_file* file, sqlite3_int64* size) {
  File* f = Of(file);
  if (int rc = Flush(f); rc != SQLITE_OK) return rc;
  return f->real->pMethods->xFileSize(f->real, size);
}

int Lock(sqlite3_file* file, int level) {
  return Of(file)->real->pMethods->xLock(Of(file)->real, level);
}
int Unlock(sqlite3_file* file, int level) {
  return Of(file)->real->pMethods->xUnlock(Of(file)->real, level);
}
int CheckReservedLock(sqlite3_file* file, int* out) {
  return Of(file)->real->pMethods->xCheckReservedLock(Of(file)->real, out);
}
int FileControl(sqlite3_file* file, int op, void* arg) {
  return Of(file)->real->pMethods->xFileControl(Of(file)->real, op, arg);
}
int SectorSize(sqlite3_file* file) { return Of(file)->real->pMethods->xSectorSize(Of(file)->real); }
int DeviceCharacteristics(sqlite3_file* file) {
  return Of(file)->real->pMethods->xDeviceCharacteristics(Of(file)->real);
}
int ShmMap(sqlite3_file* file, int region, int size, int extend, void volatile** out) {
  return Of(file)->real->pMethods->xShmMap(Of(file)->real, region, size, extend, out);
}
int ShmLock(sqlite3_file* file, int offset, int n, int flags) {
  return Of(file)->real->pMethods->xShmLock(Of(file)->real, offset, n, flags);
}
void ShmBarrier(sqlite3_file* file) { Of(file)->real->pMethods->xShmBarrier(Of(file)->real); }
int ShmUnmap(sqlite3_file* file, int del) {
  return Of(file)->real->pMethods->xShmUnmap(Of(file)->real, del);
}
int Fetch(sqlite3_file* file, sqlite3_int64 offset, int amount, void** out) {
  File* f = Of(file);
  if (int rc = Flush(f); rc != SQLITE_OK) return rc;
  return f->real->pMethods->xFetch(f->real, offset, amount, out);
}
int Unfetch(sqlite3_file* file, sqlite3_int64 offset, void* p) {
  return Of(file)->real->pMethods->xUnfetch(Of(file)->real, offset, p);
}

// The methods of a file whose base file has `version` (1-3): SQLite asks a
// file's iVersion before calling the shared-memory (2) or mmap (3) ones.
sqlite3_io_methods MethodsFor(int version) {
  sqlite3_io_methods m{};
  m.iVersion = version;
  m.xClose = Close;
  m.xRead = Read;
  m.xWrite = Write;
  m.xTruncate = Truncate;
  m.xSync = Sync;
  m.xFileSize = FileSize;
  m.xLock = Lock;
  m.xUnlock = Unlock;
  m.xCheckReservedLock = CheckReservedLock;
  m.xFileControl = FileControl;
  m.xSectorSize = SectorSize;
  m.xDeviceCharacteristics = DeviceCharacteristics;
  if (version >= 2) {
    m.xShmMap = ShmMap;
    m.xShmLock = ShmLock;
    m.xShmBarrier = ShmBarrier;
    m.xShmUnmap = ShmUnmap;
  }
  if (version >= 3) {
    m.xFetch = Fetch;
    m.xUnfetch = Unfetch;
  }
  return m;
}
const sqlite3_io_methods kMethods[4] = {MethodsFor(1), MethodsFor(1), MethodsFor(2), MethodsFor(3)};

int Open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  File* f = Of(file);
  f->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(file) + sizeof(File));
  f->wal = (flags & SQLITE_OPEN_WAL) != 0;
  f->held = nullptr;
  f->held_at = 0;
  f->commit_header = false;
  f->base.pMethods = nullptr;
  const int rc = g_base->xOpen(g_base, name, f->real, flags, out_flags);
  if (f->real->pMethods == nullptr) return rc;  // nothing to close
  if (f->wal) f->held = new (std::nothrow) std::string();
  if (f->wal && f->held == nullptr) {
    f->real->pMethods->xClose(f->real);
    return SQLITE_NOMEM;
  }
  const int version = f->real->pMethods->iVersion;
  f->base.pMethods = &kMethods[version < 1 ? 1 : version > 3 ? 3 : version];
  return rc;
}

}  // namespace

const char* WalBatchVfsName() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_base = sqlite3_vfs_find(nullptr);
    g_vfs = *g_base;
    g_vfs.iVersion = g_base->iVersion;
    g_vfs.szOsFile = static_cast<int>(sizeof(File)) + g_base->szOsFile;
    g_vfs.zName = kName;
    g_vfs.pNext = nullptr;
    g_vfs.xOpen = Open;
    // The rest is the base's, called with the base (its own state hangs off
    // the sqlite3_vfs it is given).
    g_vfs.xDelete = [](sqlite3_vfs*, const char* name, int sync) {
      return g_base->xDelete(g_base, name, sync);
    };
    g_vfs.xAccess = [](sqlite3_vfs*, const char* name, int flags, int* out) {
      return g_base->xAccess(g_base, name, flags, out);
    };
    g_vfs.xFullPathname = [](sqlite3_vfs*, const char* name, int n, char* out) {
      return g_base->xFullPathname(g_base, name, n, out);
    };
    g_vfs.xDlOpen = [](sqlite3_vfs*, const char* name) { return g_base->xDlOpen(g_base, name); };
    g_vfs.xDlError = [](sqlite3_vfs*, int n, char* out) { g_base->xDlError(g_base, n, out); };
    g_vfs.xDlSym = [](sqlite3_vfs*, void* handle, const char* symbol) {
      return g_base->xDlSym(g_base, handle, symbol);
    };
    g_vfs.xDlClose = [](sqlite3_vfs*, void* handle) { g_base->xDlClose(g_base, handle); };
    g_vfs.xRandomness = [](sqlite3_vfs*, int n, char* out) {
      return g_base->xRandomness(g_base, n, out);
    };
    g_vfs.xSleep = [](sqlite3_vfs*, int us) { return g_base->xSleep(g_base, us); };
    g_vfs.xCurrentTime = [](sqlite3_vfs*, double* out) {
      return g_base->xCurrentTime(g_base, out);
    };
    g_vfs.xGetLastError = [](sqlite3_vfs*, int n, char* out) {
      return g_base->xGetLastError(g_base, n, out);
    };
    if (g_base->iVersion >= 2) {
      g_vfs.xCurrentTimeInt64 = [](sqlite3_vfs*, sqlite3_int64* out) {
        return g_base->xCurrentTimeInt64(g_base, out);
      };
    }
    if (g_base->iVersion >= 3) {
      g_vfs.xSetSystemCall = [](sqlite3_vfs*, const char* name, sqlite3_syscall_ptr fn) {
        return g_base->xSetSystemCall(g_base, name, fn);
      };
      g_vfs.xGetSystemCall = [](sqlite3_vfs*, const char* name) {
        return g_base->xGetSystemCall(g_base, name);
      };
      g_vfs.xNextSystemCall = [](sqlite3_vfs*, const char* name) {
        return g_base->xNextSystemCall(g_base, name);
      };
    }
    sqlite3_vfs_register(&g_vfs, /*makeDflt=*/0);
  });
  return kName;
}

}  // namespace chat::store
