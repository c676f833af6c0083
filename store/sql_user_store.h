#ifndef CHAT_STORE_SQL_USER_STORE_H_
#define CHAT_STORE_SQL_USER_STORE_H_

#include <memory>
#include <string>
#include <vector>

#include "store/sql_db.h"
#include "store/user_store.h"

namespace chat::store {

// UserStore on any SqlDb: one table, accounts(name, subject, created_ms);
// subject is NULL until a name is claimed.
class SqlUserStore final : public UserStore {
 public:
  // Creates the table if missing.
  static absl::StatusOr<std::unique_ptr<UserStore>> Create(std::unique_ptr<SqlDb> db);

  absl::StatusOr<bool> AddUser(const std::string& name, int64_t now_ms) override;
  absl::StatusOr<int> AddUsers(const std::vector<std::string>& names, int64_t now_ms) override;
  absl::StatusOr<std::vector<std::string>> AllUsers() override;
  absl::StatusOr<std::string> ClaimName(const std::string& name, const std::string& subject,
                                        int64_t now_ms) override;
  absl::StatusOr<bool> DeleteUser(const std::string& name) override;

 private:
  explicit SqlUserStore(std::unique_ptr<SqlDb> db) : db_(std::move(db)) {}

  std::unique_ptr<SqlDb> db_;
};

}  // namespace chat::store

#endif  // CHAT_STORE_SQL_USER_STORE_H_
