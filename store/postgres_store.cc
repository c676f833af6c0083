#include "store/postgres_store.h"

#include <libpq-fe.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "store/sql_message_store.h"
#include "store/sql_user_store.h"

namespace chat::store {
namespace {

constexpr Oid kByteaOid = 17;
// A transaction that lost a deadlock or a unique-key race is run again
// from the start (it then sees the winner's rows).
constexpr int kMaxAttempts = 5;

bool Retryable(const char* sqlstate) {
  return sqlstate != nullptr && (std::strcmp(sqlstate, "40001") == 0 ||  // serialization_failure
                                 std::strcmp(sqlstate, "40P01") == 0 ||  // deadlock_detected
                                 std::strcmp(sqlstate, "23505") == 0);   // unique_violation
}

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

class PostgresDb final : public SqlDb {
 public:
  PostgresDb(std::string url, StoreOptions options) : url_(std::move(url)), options_(options) {}
  ~PostgresDb() override { Disconnect(); }

  absl::Status Connect();
  Dialect dialect() const override { return Dialect::kPostgres; }
  absl::Status Transaction(Mode mode, const std::function<absl::Status()>& body) override;
  absl::Status Execute(const std::string& sql) override;
  absl::StatusOr<SqlRows> Run(const std::string& sql, const std::vector<SqlParam>& params) override;

 private:
  // ABORTED for conflicts worth a retry, else UNAVAILABLE; a broken
  // connection is dropped so the next transaction reconnects.
  absl::Status Failed(const std::string& what, const PGresult* result);
  void Disconnect();

  const std::string url_;
  const StoreOptions options_;
  PGconn* conn_ = nullptr;
  std::unordered_map<std::string, std::string> prepared_;  // sql -> statement name
};

void PostgresDb::Disconnect() {
  if (conn_ != nullptr) PQfinish(conn_);
  conn_ = nullptr;
  prepared_.clear();
}

absl::Status PostgresDb::Connect() {
  Disconnect();
  // libpq counts connect_timeout in whole seconds, at least 2.
  const std::string connect_timeout = absl::StrCat(std::max(2, (options_.timeout_ms + 999) / 1000));
  const std::string user_timeout = absl::StrCat(options_.timeout_ms);
  // dbname is expanded as the URL; the keywords after it override it.
  const char* keys[] = {"dbname", "connect_timeout", "tcp_user_timeout", "application_name",
                        nullptr};
  const char* values[] = {url_.c_str(), connect_timeout.c_str(), user_timeout.c_str(), "chat-store",
                          nullptr};
  conn_ = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (conn_ == nullptr || PQstatus(conn_) != CONNECTION_OK) {
    std::string message = conn_ != nullptr ? PQerrorMessage(conn_) : "out of memory";
    Disconnect();
    return absl::UnavailableError(
        absl::StrCat("postgresql: cannot connect: ", absl::StripTrailingAsciiWhitespace(message)));
  }
  // IF NOT EXISTS and friends report through notices; nobody reads them.
  PQsetNoticeProcessor(
      conn_, [](void*, const char*) {}, nullptr);
  return Execute(absl::StrCat("SET statement_timeout = ", options_.timeout_ms));
}

absl::Status PostgresDb::Failed(const std::string& what, const PGresult* result) {
  const char* sqlstate = result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  std::string message = absl::StrCat("postgresql: ", what, ": ",
                                     absl::StripTrailingAsciiWhitespace(PQerrorMessage(conn_)));
  if (PQstatus(conn_) != CONNECTION_OK) {
    Disconnect();
    return absl::UnavailableError(message);
  }
  if (Retryable(sqlstate)) return absl::AbortedError(message);
  return absl::UnavailableError(message);
}

absl::Status PostgresDb::Execute(const std::string& sql) {
  if (conn_ == nullptr) return absl::UnavailableError("postgresql: connection lost");
  Result r(PQexec(conn_, sql.c_str()));
  if (r == nullptr || PQresultStatus(r.get()) != PGRES_COMMAND_OK) return Failed("exec", r.get());
  return absl::OkStatus();
}

absl::Status PostgresDb::Transaction(Mode mode, const std::function<absl::Status()>& body) {
  absl::Status status;
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    bool fresh = false;
    if (conn_ == nullptr) {
      STORE_RETURN_IF_ERROR(Connect());
      fresh = true;
    }
    status = Execute("BEGIN");
    if (!status.ok() && conn_ == nullptr && !fresh) {
      // The server went away since our last call (restart, idle cut):
      // nothing was sent yet, so one new connection is worth a try.
      STORE_RETURN_IF_ERROR(Connect());
      status = Execute("BEGIN");
    }
    if (!status.ok()) break;
    status = body();
    if (status.ok()) status = Execute("COMMIT");
    if (status.ok()) return status;
    if (conn_ != nullptr) {
      Result r(PQexec(conn_, "ROLLBACK"));
      if (PQstatus(conn_) != CONNECTION_OK) Disconnect();
    }
    if (!absl::IsAborted(status)) return status;
  }
  // Conflicts that kept coming back are a temporary failure like any other.
  if (absl::IsAborted(status)) return absl::UnavailableError(status.message());
  return status;
}

absl::StatusOr<SqlRows> PostgresDb::Run(const std::string& sql,
                                        const std::vector<SqlParam>& params) {
  if (conn_ == nullptr) return absl::UnavailableError("postgresql: connection lost");
  auto it = prepared_.find(sql);
  if (it == prepared_.end()) {
    const std::string name = absl::StrCat("s", prepared_.size());
    Result r(PQprepare(conn_, name.c_str(), sql.c_str(), static_cast<int>(params.size()), nullptr));
    if (r == nullptr || PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
      return Failed(absl::StrCat("prepare ", sql), r.get());
    }
    it = prepared_.emplace(sql, name).first;
  }
  std::vector<std::string> numbers(params.size());
  std::vector<const char*> values(params.size());
  std::vector<int> lengths(params.size());
  std::vector<int> formats(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const SqlParam& p = params[i];
    if (std::holds_alternative<std::nullptr_t>(p)) {
      values[i] = nullptr;
    } else if (const int64_t* v = std::get_if<int64_t>(&p)) {
      numbers[i] = absl::StrCat(*v);
      values[i] = numbers[i].c_str();
    } else if (const std::string* s = std::get_if<std::string>(&p)) {
      values[i] = s->c_str();
    } else {
      const std::string& bytes = std::get<Blob>(p).bytes;
      values[i] = bytes.data();
      lengths[i] = static_cast<int>(bytes.size());
      formats[i] = 1;  // binary: bytea travels as raw bytes
    }
  }
  Result r(PQexecPrepared(conn_, it->second.c_str(), static_cast<int>(params.size()), values.data(),
                          lengths.data(), formats.data(), /*resultFormat=*/0));
  const ExecStatusType state = r != nullptr ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (state != PGRES_TUPLES_OK && state != PGRES_COMMAND_OK) return Failed(sql, r.get());
  SqlRows rows;
  const int columns = PQnfields(r.get());
  for (int row = 0; row < PQntuples(r.get()); ++row) {
    std::vector<std::optional<std::string>> cells(columns);
    for (int c = 0; c < columns; ++c) {
      if (PQgetisnull(r.get(), row, c)) continue;
      const char* text = PQgetvalue(r.get(), row, c);
      if (PQftype(r.get(), c) == kByteaOid) {
        size_t size = 0;
        unsigned char* bytes = PQunescapeBytea(reinterpret_cast<const unsigned char*>(text), &size);
        if (bytes == nullptr) return absl::UnavailableError("postgresql: out of memory");
        cells[c].emplace(reinterpret_cast<const char*>(bytes), size);
        PQfreemem(bytes);
      } else {
        cells[c].emplace(text, PQgetlength(r.get(), row, c));
      }
    }
    rows.AddRow(std::move(cells));
  }
  const char* affected = PQcmdTuples(r.get());
  rows.set_affected(affected[0] != '\0' ? std::strtoll(affected, nullptr, 10) : 0);
  return rows;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SqlDb>> OpenPostgresDb(const std::string& url,
                                                      const StoreOptions& options) {
  auto db = std::make_unique<PostgresDb>(url, options);
  STORE_RETURN_IF_ERROR(db->Connect());
  return std::unique_ptr<SqlDb>(std::move(db));
}

absl::StatusOr<std::unique_ptr<MessageStore>> OpenPostgresMessageStore(
    const std::string& url, const StoreOptions& options) {
  absl::StatusOr<std::unique_ptr<SqlDb>> db = OpenPostgresDb(url, options);
  if (!db.ok()) return db.status();
  return SqlMessageStore::Create(std::move(*db));
}

absl::StatusOr<std::unique_ptr<UserStore>> OpenPostgresUserStore(const std::string& url,
                                                                 const StoreOptions& options) {
  absl::StatusOr<std::unique_ptr<SqlDb>> db = OpenPostgresDb(url, options);
  if (!db.ok()) return db.status();
  return SqlUserStore::Create(std::move(*db));
}

}  // namespace chat::store
