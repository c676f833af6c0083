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
// Statements per pipeline round trip: few enough that their replies fit in
// the socket buffers (libpq blocks on send; the server on its replies).
constexpr size_t kPipelineChunk = 128;

bool Retryable(const char* sqlstate) {
  return sqlstate != nullptr && (std::strcmp(sqlstate, "40001") == 0 ||  // serialization_failure
                                 std::strcmp(sqlstate, "40P01") == 0 ||  // deadlock_detected
                                 std::strcmp(sqlstate, "23505") == 0);   // unique_violation
}

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

// libpq's parameter arrays for one statement.
struct PackedParams {
  explicit PackedParams(const std::vector<SqlParam>& params);
  std::vector<std::string> numbers;
  std::vector<const char*> values;
  std::vector<int> lengths;
  std::vector<int> formats;
};

class PostgresDb final : public SqlDb {
 public:
  PostgresDb(std::string url, StoreOptions options) : url_(std::move(url)), options_(options) {}
  ~PostgresDb() override { Disconnect(); }

  absl::Status Connect();
  Dialect dialect() const override { return Dialect::kPostgres; }
  absl::Status Transaction(Mode mode, const std::function<absl::Status()>& body) override;
  absl::Status Execute(const std::string& sql) override;
  absl::StatusOr<SqlRows> Run(const std::string& sql, const std::vector<SqlParam>& params) override;
  absl::StatusOr<std::vector<SqlRows>> RunAll(const std::vector<SqlStatement>& statements) override;

 private:
  // The name of `sql` prepared on this connection (prepared on first use).
  absl::StatusOr<std::string> Prepare(const std::string& sql, size_t params);
  // statements[begin, end) in one pipeline round trip; appends their rows.
  absl::Status Pipeline(const std::vector<SqlStatement>& statements,
                        const std::vector<std::string>& names, size_t begin, size_t end,
                        std::vector<SqlRows>& results);
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
  // In a pipeline the connection's message may belong to another result.
  const char* reason = result != nullptr ? PQresultErrorMessage(result) : "";
  if (reason[0] == '\0') reason = PQerrorMessage(conn_);
  std::string message =
      absl::StrCat("postgresql: ", what, ": ", absl::StripTrailingAsciiWhitespace(reason));
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

absl::StatusOr<std::string> PostgresDb::Prepare(const std::string& sql, size_t params) {
  auto it = prepared_.find(sql);
  if (it != prepared_.end()) return it->second;
  const std::string name = absl::StrCat("s", prepared_.size());
  Result r(PQprepare(conn_, name.c_str(), sql.c_str(), static_cast<int>(params), nullptr));
  if (r == nullptr || PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
    return Failed(absl::StrCat("prepare ", sql), r.get());
  }
  prepared_.emplace(sql, name);
  return name;
}

PackedParams::PackedParams(const std::vector<SqlParam>& params)
    : numbers(params.size()),
      values(params.size()),
      lengths(params.size()),
      formats(params.size()) {
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
}

absl::StatusOr<SqlRows> ToRows(const PGresult* r) {
  SqlRows rows;
  const int columns = PQnfields(r);
  for (int row = 0; row < PQntuples(r); ++row) {
    std::vector<std::optional<std::string>> cells(columns);
    for (int c = 0; c < columns; ++c) {
      if (PQgetisnull(r, row, c)) continue;
      const char* text = PQgetvalue(r, row, c);
      if (PQftype(r, c) == kByteaOid) {
        size_t size = 0;
        unsigned char* bytes = PQunescapeBytea(reinterpret_cast<const unsigned char*>(text), &size);
        if (bytes == nullptr) return absl::UnavailableError("postgresql: out of memory");
        cells[c].emplace(reinterpret_cast<const char*>(bytes), size);
        PQfreemem(bytes);
      } else {
        cells[c].emplace(text, PQgetlength(r, row, c));
      }
    }
    rows.AddRow(std::move(cells));
  }
  const char* affected = PQcmdTuples(const_cast<PGresult*>(r));
  rows.set_affected(affected[0] != '\0' ? std::strtoll(affected, nullptr, 10) : 0);
  return rows;
}

bool Succeeded(const PGresult* r) {
  const ExecStatusType state = r != nullptr ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  return state == PGRES_TUPLES_OK || state == PGRES_COMMAND_OK;
}

absl::StatusOr<SqlRows> PostgresDb::Run(const std::string& sql,
                                        const std::vector<SqlParam>& params) {
  if (conn_ == nullptr) return absl::UnavailableError("postgresql: connection lost");
  absl::StatusOr<std::string> name = Prepare(sql, params.size());
  if (!name.ok()) return name.status();
  PackedParams packed(params);
  Result r(PQexecPrepared(conn_, name->c_str(), static_cast<int>(params.size()),
                          packed.values.data(), packed.lengths.data(), packed.formats.data(),
                          /*resultFormat=*/0));
  if (!Succeeded(r.get())) return Failed(sql, r.get());
  return ToRows(r.get());
}

absl::StatusOr<std::vector<SqlRows>> PostgresDb::RunAll(
    const std::vector<SqlStatement>& statements) {
  if (conn_ == nullptr) return absl::UnavailableError("postgresql: connection lost");
  std::vector<std::string> names;
  for (const SqlStatement& s : statements) {
    absl::StatusOr<std::string> name = Prepare(s.sql, s.params.size());
    if (!name.ok()) return name.status();
    names.push_back(std::move(*name));
  }
  std::vector<SqlRows> results;
  results.reserve(statements.size());
  for (size_t begin = 0; begin < statements.size(); begin += kPipelineChunk) {
    const size_t end = std::min(statements.size(), begin + kPipelineChunk);
    STORE_RETURN_IF_ERROR(Pipeline(statements, names, begin, end, results));
  }
  return results;
}

absl::Status PostgresDb::Pipeline(const std::vector<SqlStatement>& statements,
                                  const std::vector<std::string>& names, size_t begin, size_t end,
                                  std::vector<SqlRows>& results) {
  // Anything unexpected in the pipeline's protocol drops the connection:
  // the server then rolls the transaction back by itself.
  auto broken = [&](const std::string& what) {
    std::string message = absl::StrCat("postgresql: pipeline ", what, ": ",
                                       absl::StripTrailingAsciiWhitespace(PQerrorMessage(conn_)));
    Disconnect();
    return absl::UnavailableError(message);
  };
  if (!PQenterPipelineMode(conn_)) return broken("enter");
  for (size_t i = begin; i < end; ++i) {
    PackedParams packed(statements[i].params);
    if (!PQsendQueryPrepared(conn_, names[i].c_str(), static_cast<int>(packed.values.size()),
                             packed.values.data(), packed.lengths.data(), packed.formats.data(),
                             /*resultFormat=*/0)) {
      return broken("send");
    }
  }
  if (!PQpipelineSync(conn_)) return broken("sync");
  absl::Status first_error;
  for (size_t i = begin; i < end; ++i) {
    Result r(PQgetResult(conn_));
    if (r == nullptr) return broken("result");
    const ExecStatusType state = PQresultStatus(r.get());
    if (state == PGRES_PIPELINE_ABORTED) {
      // Skipped after an earlier failure.
    } else if (!Succeeded(r.get())) {
      if (first_error.ok()) first_error = Failed(statements[i].sql, r.get());
      if (conn_ == nullptr) return first_error;
    } else if (first_error.ok()) {
      absl::StatusOr<SqlRows> rows = ToRows(r.get());
      if (!rows.ok()) return broken("out of memory");
      results.push_back(std::move(*rows));
    }
    if (Result(PQgetResult(conn_)) != nullptr) return broken("extra result");
  }
  Result sync(PQgetResult(conn_));
  if (sync == nullptr || PQresultStatus(sync.get()) != PGRES_PIPELINE_SYNC) return broken("sync");
  if (!PQexitPipelineMode(conn_)) return broken("exit");
  return first_error;
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
