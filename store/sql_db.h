#ifndef CHAT_STORE_SQL_DB_H_
#define CHAT_STORE_SQL_DB_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

// Returns a failed absl::Status from the enclosing function.
#define STORE_RETURN_IF_ERROR(expr)    \
  do {                                 \
    absl::Status status_ = (expr);     \
    if (!status_.ok()) return status_; \
  } while (0)

// The little the store logic needs from a SQL engine, so that one
// implementation of the stores' semantics runs on SQLite and on PostgreSQL.
// SQL is written once with $1, $2, ... placeholders in the common subset of
// both dialects (ON CONFLICT, RETURNING, partial indexes).
namespace chat::store {

// Bytes that may hold anything (message text, idempotency keys): BLOB in
// SQLite, BYTEA in PostgreSQL (whose TEXT cannot hold a NUL byte).
struct Blob {
  std::string bytes;
};

using SqlParam = std::variant<std::nullptr_t, int64_t, std::string, Blob>;

struct SqlStatement {
  std::string sql;
  std::vector<SqlParam> params;
};

// Appends INSERTs of the rows in `values` (`width` values per row) to `out`,
// several rows per statement: on both engines a statement costs more than a
// row. `head` is "INSERT INTO t (a, b)", `tail` what follows the VALUES list
// (e.g. "ON CONFLICT ... DO NOTHING", or ""). Rows per statement are powers
// of two up to 64, so that few distinct statements are prepared and cached.
// The values are moved into the statements (pass an rvalue to avoid a copy).
void AppendInserts(absl::string_view head, size_t width, std::vector<SqlParam> values,
                   std::vector<SqlStatement>& out, absl::string_view tail = "");

class SqlRows {
 public:
  size_t size() const { return rows_.size(); }
  bool empty() const { return rows_.empty(); }
  bool IsNull(size_t row, int col) const { return !rows_[row][col].has_value(); }
  // Text or blob bytes; "" for NULL.
  const std::string& Text(size_t row, int col) const;
  // 0 for NULL.
  int64_t Int(size_t row, int col) const;
  // Rows changed by an INSERT/UPDATE/DELETE.
  int64_t affected() const { return affected_; }

  void AddRow(std::vector<std::optional<std::string>> row) { rows_.push_back(std::move(row)); }
  void set_affected(int64_t n) { affected_ = n; }

 private:
  std::vector<std::vector<std::optional<std::string>>> rows_;
  int64_t affected_ = 0;
};

class SqlDb {
 public:
  enum class Dialect { kSqlite, kPostgres };
  enum class Mode { kRead, kWrite };

  virtual ~SqlDb() = default;
  virtual Dialect dialect() const = 0;

  // Runs `body` in one transaction and commits it; anything failing rolls
  // it all back. Engine failures come back as UNAVAILABLE (the engine is
  // reopened/reconnected by the next call). `body` may run more than once
  // (PostgreSQL retries deadlocks and serialization failures), so it must
  // rebuild its results from scratch each time.
  virtual absl::Status Transaction(Mode mode, const std::function<absl::Status()>& body) = 0;

  // Parameterless statements (the schema), not cached; inside a
  // Transaction's body.
  virtual absl::Status Execute(const std::string& sql) = 0;

  // One statement inside Transaction's body. Statements are prepared once
  // and cached by their text.
  virtual absl::StatusOr<SqlRows> Run(const std::string& sql,
                                      const std::vector<SqlParam>& params) = 0;

  // Statements that need no result of each other, in order, stopping at
  // the first failure. PostgreSQL pipelines them (a round trip per chunk,
  // not per statement); SQLite runs them one by one.
  virtual absl::StatusOr<std::vector<SqlRows>> RunAll(const std::vector<SqlStatement>& statements) {
    std::vector<SqlRows> results;
    results.reserve(statements.size());
    for (const SqlStatement& s : statements) {
      absl::StatusOr<SqlRows> rows = Run(s.sql, s.params);
      if (!rows.ok()) return rows.status();
      results.push_back(std::move(*rows));
    }
    return results;
  }

  // The dialect's name for a column of Blob bytes.
  const char* BlobType() const { return dialect() == Dialect::kSqlite ? "BLOB" : "BYTEA"; }
  // Appended to CREATE TABLE for small rows looked up by their primary
  // key: SQLite then stores them in the key's b-tree instead of two.
  const char* KeyedTable() const { return dialect() == Dialect::kSqlite ? " WITHOUT ROWID" : ""; }
  // Appended to a SELECT that locks the rows it reads until the commit.
  // SQLite's write transaction already excludes every other writer.
  const char* ForUpdate() const { return dialect() == Dialect::kSqlite ? "" : " FOR UPDATE"; }
};

}  // namespace chat::store

#endif  // CHAT_STORE_SQL_DB_H_
