#include "connection-service/memory_store.h"

namespace chat::connection {

bool MemoryStore::AddUser(const std::string& name) { return users_.insert(name).second; }

bool MemoryStore::HasUser(const std::string& name) const { return users_.count(name) > 0; }

bool MemoryStore::RemoveUser(const std::string& name) { return users_.erase(name) > 0; }

bool MemoryStore::AddConnection(const ConnectionInfo& info) {
  if (!connections_.emplace(info.connection_id, info).second) return false;
  by_user_[info.user].insert(info.connection_id);
  by_edge_[info.edge_id].insert(info.connection_id);
  return true;
}

std::optional<ConnectionInfo> MemoryStore::RemoveConnection(const std::string& connection_id) {
  auto it = connections_.find(connection_id);
  if (it == connections_.end()) return std::nullopt;
  ConnectionInfo info = std::move(it->second);
  connections_.erase(it);
  auto erase_from = [&](auto& index, const std::string& key) {
    auto found = index.find(key);
    if (found == index.end()) return;
    found->second.erase(connection_id);
    if (found->second.empty()) index.erase(found);
  };
  erase_from(by_user_, info.user);
  erase_from(by_edge_, info.edge_id);
  return info;
}

size_t MemoryStore::ConnectionCount(const std::string& user) const {
  auto it = by_user_.find(user);
  return it == by_user_.end() ? 0 : it->second.size();
}

std::vector<ConnectionInfo> MemoryStore::ConnectionsOfUser(const std::string& user) const {
  std::vector<ConnectionInfo> out;
  auto it = by_user_.find(user);
  if (it == by_user_.end()) return out;
  for (const auto& id : it->second) out.push_back(connections_.at(id));
  return out;
}

std::vector<std::string> MemoryStore::ConnectionIdsOfEdge(const std::string& edge_id) const {
  auto it = by_edge_.find(edge_id);
  if (it == by_edge_.end()) return {};
  return {it->second.begin(), it->second.end()};
}

std::vector<ConnectionInfo> MemoryStore::AllConnections() const {
  std::vector<ConnectionInfo> out;
  out.reserve(connections_.size());
  for (const auto& [id, info] : connections_) out.push_back(info);
  return out;
}

std::vector<std::string> MemoryStore::AllUsers() const { return {users_.begin(), users_.end()}; }

std::vector<UserEntry> MemoryStore::ListUsers(const std::string& after, size_t limit,
                                              bool online_only, bool* more) const {
  std::vector<UserEntry> out;
  *more = false;
  for (auto it = users_.upper_bound(after); it != users_.end(); ++it) {
    const bool online = by_user_.count(*it) > 0;
    if (online_only && !online) continue;
    if (out.size() == limit) {
      *more = true;
      break;
    }
    out.push_back({*it, online});
  }
  return out;
}

RegistryStore::Touch MemoryStore::TouchEdge(const std::string& edge_id,
                                            const std::string& incarnation, int64_t now_ms) {
  auto [it, inserted] = leases_.try_emplace(edge_id, Lease{now_ms, incarnation});
  if (inserted) return Touch::kNew;
  it->second.seen_ms = now_ms;
  if (it->second.incarnation == incarnation) return Touch::kKnown;
  it->second.incarnation = incarnation;
  return Touch::kNewIncarnation;
}

std::vector<std::string> MemoryStore::EdgesSeenBefore(int64_t cutoff_ms) const {
  std::vector<std::string> out;
  for (const auto& [edge, lease] : leases_) {
    if (lease.seen_ms < cutoff_ms) out.push_back(edge);
  }
  return out;
}

void MemoryStore::RemoveEdge(const std::string& edge_id) { leases_.erase(edge_id); }

}  // namespace chat::connection
