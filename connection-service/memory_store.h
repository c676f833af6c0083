#ifndef CHAT_CONNECTION_SERVICE_MEMORY_STORE_H_
#define CHAT_CONNECTION_SERVICE_MEMORY_STORE_H_

#include <map>
#include <set>
#include <unordered_map>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "connection-service/registry_store.h"

namespace chat::connection {

class MemoryStore : public RegistryStore {
 public:
  bool AddUser(const std::string& name) override;
  bool HasUser(const std::string& name) const override;
  bool RemoveUser(const std::string& name) override;
  bool AddConnection(const ConnectionInfo& info) override;
  std::optional<ConnectionInfo> RemoveConnection(const std::string& connection_id) override;
  size_t ConnectionCount(const std::string& user) const override;
  std::vector<ConnectionInfo> ConnectionsOfUser(const std::string& user) const override;
  std::vector<std::string> ConnectionIdsOfEdge(const std::string& edge_id) const override;
  std::vector<ConnectionInfo> AllConnections() const override;
  std::vector<std::string> AllUsers() const override;
  std::vector<UserEntry> ListUsers(const std::string& after, size_t limit, bool online_only,
                                   bool* more) const override;
  Touch TouchEdge(const std::string& edge_id, const std::string& incarnation,
                  int64_t now_ms) override;
  std::vector<std::string> EdgesSeenBefore(int64_t cutoff_ms) const override;
  void RemoveEdge(const std::string& edge_id) override;
  size_t UserCount() const override { return users_.size(); }
  size_t OnlineUserCount() const override { return by_user_.size(); }
  size_t ConnectionTotal() const override { return connections_.size(); }
  size_t EdgeCount() const override { return leases_.size(); }

 private:
  std::set<std::string> users_;  // ordered, for paging
  absl::flat_hash_map<std::string, ConnectionInfo> connections_;
  absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>> by_user_;
  absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>> by_edge_;
  struct Lease {
    int64_t seen_ms;
    std::string incarnation;
  };
  absl::flat_hash_map<std::string, Lease> leases_;
};

}  // namespace chat::connection

#endif  // CHAT_CONNECTION_SERVICE_MEMORY_STORE_H_
