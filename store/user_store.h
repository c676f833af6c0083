#ifndef CHAT_STORE_USER_STORE_H_
#define CHAT_STORE_USER_STORE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// connection-service's durable table of users ever seen (and who owns each
// name). Live connections and leases are not here: they are rebuilt from the
// edges. Not thread-safe: the caller serialises.
namespace chat::store {

class UserStore {
 public:
  virtual ~UserStore() = default;

  // Adds `name` if missing; returns true when it was new.
  virtual absl::StatusOr<bool> AddUser(const std::string& name, int64_t now_ms) = 0;
  // Adds every missing name of `names` in one transaction (a connect storm
  // of new users costs one commit per registration batch, not one per user);
  // returns how many were new. All or nothing.
  virtual absl::StatusOr<int> AddUsers(const std::vector<std::string>& names, int64_t now_ms) = 0;
  // Every user, sorted by name (loaded once at start).
  virtual absl::StatusOr<std::vector<std::string>> AllUsers() = 0;
  // Binds `name` to the identity-provider subject `subject` unless another
  // subject holds it. Returns the subject that owns the name afterwards (the
  // caller compares); the user is added as with AddUser.
  virtual absl::StatusOr<std::string> ClaimName(const std::string& name, const std::string& subject,
                                                int64_t now_ms) = 0;
  // Erases the user and their claim; returns false when there was none.
  virtual absl::StatusOr<bool> DeleteUser(const std::string& name) = 0;
};

}  // namespace chat::store

#endif  // CHAT_STORE_USER_STORE_H_
