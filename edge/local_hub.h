#ifndef CHAT_EDGE_LOCAL_HUB_H_
#define CHAT_EDGE_LOCAL_HUB_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "edge/backends.h"

namespace chat::edge {

// This edge's live connections by id, and who watches whose presence. Hands
// out frames to connections; never calls a connection while holding its lock.
class LocalHub {
 public:
  void Add(const std::string& connection_id, std::weak_ptr<LocalConnection> connection);
  void Remove(const std::string& connection_id);

  // Replaces the connection's watch set (empty clears it).
  void SetWatch(const std::string& connection_id, const std::vector<std::string>& users);

  // One frame shared by every target connection. Returns how many were live.
  int Deliver(const std::vector<std::string>& connection_ids,
              const std::shared_ptr<const std::string>& frame);
  // Calls `fn` (outside the lock) on each live connection among `ids`;
  // returns how many there were.
  template <typename Ids>
  int ForEach(const Ids& ids, const std::function<void(LocalConnection&)>& fn);
  // Calls `fn` on every live connection.
  void ForAll(const std::function<void(LocalConnection&)>& fn);
  void OnPresence(const std::string& user, bool online, int64_t ts_ms);
  bool Kick(const std::string& connection_id, uint16_t close_code, const std::string& reason);
  void KickAll(uint16_t close_code, const std::string& reason);

  size_t size() const;

 private:
  std::shared_ptr<LocalConnection> FindLocked(const std::string& connection_id) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::weak_ptr<LocalConnection>> connections_
      ABSL_GUARDED_BY(mu_);
  // watched user -> connections watching; connection -> users it watches.
  absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>> watchers_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::vector<std::string>> watching_ ABSL_GUARDED_BY(mu_);
};

template <typename Ids>
int LocalHub::ForEach(const Ids& ids, const std::function<void(LocalConnection&)>& fn) {
  std::vector<std::shared_ptr<LocalConnection>> targets;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& id : ids) {
      if (auto c = FindLocked(id)) targets.push_back(std::move(c));
    }
  }
  for (auto& c : targets) fn(*c);
  return static_cast<int>(targets.size());
}

}  // namespace chat::edge

#endif  // CHAT_EDGE_LOCAL_HUB_H_
