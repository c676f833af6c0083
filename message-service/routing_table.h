#ifndef CHAT_MESSAGE_SERVICE_ROUTING_TABLE_H_
#define CHAT_MESSAGE_SERVICE_ROUTING_TABLE_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"

namespace chat::message {

struct Route {
  std::string connection_id;
  std::string edge_id;
};

enum class LookupStatus { kNotReady, kUnknownUser, kOffline, kOnline };

struct LookupResult {
  LookupStatus status = LookupStatus::kNotReady;
  std::vector<Route> routes;
};

// The local copy of "who is connected where", kept current by the
// connection-service's WatchRoutes stream so that routing a message needs no
// RPC. Thread-safe; lookups share the lock.
class RoutingTable {
 public:
  // Starts a new snapshot: drops everything and is not ready until MarkReady.
  void Reset();
  void MarkReady();
  void MarkNotReady();
  void AddUsers(const std::vector<std::string>& users);
  void Add(const std::string& user, Route route);
  void Remove(const std::string& user, const std::string& connection_id);

  LookupResult Lookup(const std::string& user) const;
  bool ready() const;
  size_t connection_count() const;

 private:
  mutable absl::Mutex mu_;
  bool ready_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_set<std::string> users_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::vector<Route>> routes_ ABSL_GUARDED_BY(mu_);
  size_t connections_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace chat::message

#endif  // CHAT_MESSAGE_SERVICE_ROUTING_TABLE_H_
