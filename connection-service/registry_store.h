#ifndef CHAT_CONNECTION_SERVICE_REGISTRY_STORE_H_
#define CHAT_CONNECTION_SERVICE_REGISTRY_STORE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace chat::connection {

struct ConnectionInfo {
  std::string connection_id;
  std::string user;
  std::string edge_id;
  int64_t connected_at_ms = 0;
  std::string user_agent;
  std::string ip;
};

struct UserEntry {
  std::string name;
  bool online = false;
};

// Where the registry's state lives. Not thread-safe: the Registry serialises
// calls. The in-memory store is the default; a shared store (Redis) would let
// several connection-service replicas agree.
class RegistryStore {
 public:
  virtual ~RegistryStore() = default;

  // Returns true if the user did not exist before.
  virtual bool AddUser(const std::string& name) = 0;
  virtual bool HasUser(const std::string& name) const = 0;
  // Returns false if there was no such user. The caller removes the user's
  // connections first.
  virtual bool RemoveUser(const std::string& name) = 0;
  // Returns false if the connection id was already present (nothing changes).
  virtual bool AddConnection(const ConnectionInfo& info) = 0;
  virtual std::optional<ConnectionInfo> RemoveConnection(const std::string& connection_id) = 0;
  virtual size_t ConnectionCount(const std::string& user) const = 0;
  virtual std::vector<ConnectionInfo> ConnectionsOfUser(const std::string& user) const = 0;
  virtual std::vector<std::string> ConnectionIdsOfEdge(const std::string& edge_id) const = 0;
  virtual std::vector<ConnectionInfo> AllConnections() const = 0;
  virtual std::vector<std::string> AllUsers() const = 0;
  // Users sorted by name, strictly after `after`, at most `limit`; `more` tells
  // whether another matching user follows.
  virtual std::vector<UserEntry> ListUsers(const std::string& after, size_t limit, bool online_only,
                                           bool* more) const = 0;

  // Edge leases: the time of the last sign of life and the incarnation (one
  // per edge process start) that gave it.
  enum class Touch { kKnown, kNew, kNewIncarnation };
  virtual Touch TouchEdge(const std::string& edge_id, const std::string& incarnation,
                          int64_t now_ms) = 0;
  virtual std::vector<std::string> EdgesSeenBefore(int64_t cutoff_ms) const = 0;
  virtual void RemoveEdge(const std::string& edge_id) = 0;

  // Totals, in constant time.
  virtual size_t UserCount() const = 0;
  virtual size_t OnlineUserCount() const = 0;
  virtual size_t ConnectionTotal() const = 0;
  virtual size_t EdgeCount() const = 0;
};

}  // namespace chat::connection

#endif  // CHAT_CONNECTION_SERVICE_REGISTRY_STORE_H_
