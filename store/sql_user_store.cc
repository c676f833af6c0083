#include "store/sql_user_store.h"

#include <algorithm>

namespace chat::store {
namespace {

using Mode = SqlDb::Mode;

absl::Status CheckName(const std::string& name) {
  return name.empty() ? absl::InvalidArgumentError("empty user name") : absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<UserStore>> SqlUserStore::Create(std::unique_ptr<SqlDb> db) {
  SqlDb& engine = *db;
  std::unique_ptr<UserStore> store(new SqlUserStore(std::move(db)));
  STORE_RETURN_IF_ERROR(engine.Transaction(Mode::kWrite, [&]() -> absl::Status {
    if (engine.dialect() == SqlDb::Dialect::kPostgres) {
      // Replicas starting together would race on CREATE ... IF NOT EXISTS.
      STORE_RETURN_IF_ERROR(engine.Run("SELECT pg_advisory_xact_lock(7270002)", {}).status());
    }
    return engine.Execute(
        "CREATE TABLE IF NOT EXISTS accounts (name TEXT PRIMARY KEY, subject TEXT,"
        " created_ms BIGINT NOT NULL)");
  }));
  return store;
}

absl::StatusOr<bool> SqlUserStore::AddUser(const std::string& name, int64_t now_ms) {
  STORE_RETURN_IF_ERROR(CheckName(name));
  bool added = false;
  STORE_RETURN_IF_ERROR(db_->Transaction(Mode::kWrite, [&]() -> absl::Status {
    absl::StatusOr<SqlRows> rows = db_->Run(
        "INSERT INTO accounts (name, created_ms) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        {name, now_ms});
    if (!rows.ok()) return rows.status();
    added = rows->affected() > 0;
    return absl::OkStatus();
  }));
  return added;
}

absl::StatusOr<int> SqlUserStore::AddUsers(const std::vector<std::string>& names, int64_t now_ms) {
  std::vector<SqlParam> rows;
  rows.reserve(names.size() * 2);
  for (const std::string& name : names) {
    STORE_RETURN_IF_ERROR(CheckName(name));
    rows.insert(rows.end(), {name, now_ms});
  }
  std::vector<SqlStatement> inserts;
  AppendInserts("INSERT INTO accounts (name, created_ms)", 2, std::move(rows), inserts,
                "ON CONFLICT (name) DO NOTHING");
  int added = 0;
  STORE_RETURN_IF_ERROR(db_->Transaction(Mode::kWrite, [&]() -> absl::Status {
    added = 0;  // a retried transaction counts again
    absl::StatusOr<std::vector<SqlRows>> done = db_->RunAll(inserts);
    if (!done.ok()) return done.status();
    for (const SqlRows& r : *done) added += static_cast<int>(r.affected());
    return absl::OkStatus();
  }));
  return added;
}

absl::StatusOr<std::vector<std::string>> SqlUserStore::AllUsers() {
  std::vector<std::string> names;
  STORE_RETURN_IF_ERROR(db_->Transaction(Mode::kRead, [&]() -> absl::Status {
    absl::StatusOr<SqlRows> rows = db_->Run("SELECT name FROM accounts", {});
    if (!rows.ok()) return rows.status();
    names.clear();
    for (size_t r = 0; r < rows->size(); ++r) names.push_back(rows->Text(r, 0));
    return absl::OkStatus();
  }));
  // Byte order, whatever the database's collation.
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<std::string> SqlUserStore::ClaimName(const std::string& name,
                                                    const std::string& subject, int64_t now_ms) {
  STORE_RETURN_IF_ERROR(CheckName(name));
  if (subject.empty()) return absl::InvalidArgumentError("empty subject");
  std::string owner;
  STORE_RETURN_IF_ERROR(db_->Transaction(Mode::kWrite, [&]() -> absl::Status {
    // One statement, so two replicas claiming at once cannot both win.
    STORE_RETURN_IF_ERROR(db_->Run("INSERT INTO accounts (name, subject, created_ms)"
                                   " VALUES ($1, $2, $3) ON CONFLICT (name)"
                                   " DO UPDATE SET subject = excluded.subject"
                                   " WHERE accounts.subject IS NULL",
                                   {name, subject, now_ms})
                              .status());
    absl::StatusOr<SqlRows> rows = db_->Run("SELECT subject FROM accounts WHERE name = $1", {name});
    if (!rows.ok()) return rows.status();
    owner = rows->empty() ? "" : rows->Text(0, 0);
    return absl::OkStatus();
  }));
  return owner;
}

absl::StatusOr<bool> SqlUserStore::DeleteUser(const std::string& name) {
  STORE_RETURN_IF_ERROR(CheckName(name));
  bool deleted = false;
  STORE_RETURN_IF_ERROR(db_->Transaction(Mode::kWrite, [&]() -> absl::Status {
    absl::StatusOr<SqlRows> rows = db_->Run("DELETE FROM accounts WHERE name = $1", {name});
    if (!rows.ok()) return rows.status();
    deleted = rows->affected() > 0;
    return absl::OkStatus();
  }));
  return deleted;
}

}  // namespace chat::store
