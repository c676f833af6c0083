#include "store/open_store.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "store/postgres_store.h"
#include "store/sqlite_store.h"

namespace chat::store {
namespace {

enum class Engine { kSqlite, kPostgres };

struct Target {
  Engine engine;
  std::string location;  // the SQLite path or the PostgreSQL URL
};

absl::StatusOr<Target> ParseUrl(const std::string& url) {
  absl::string_view rest = url;
  if (absl::ConsumePrefix(&rest, "sqlite:")) {
    if (rest.empty()) return absl::InvalidArgumentError("store \"sqlite:\" needs a file path");
    return Target{Engine::kSqlite, std::string(rest)};
  }
  if (absl::StartsWith(url, "postgresql://") || absl::StartsWith(url, "postgres://")) {
    return Target{Engine::kPostgres, url};
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "store \"", url, "\" is neither sqlite:PATH nor a postgresql://user@host:port/db URL"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<MessageStore>> OpenMessageStore(const std::string& url,
                                                               const StoreOptions& options) {
  absl::StatusOr<Target> target = ParseUrl(url);
  if (!target.ok()) return target.status();
  if (target->engine == Engine::kSqlite) return OpenSqliteMessageStore(target->location, options);
  return OpenPostgresMessageStore(target->location, options);
}

absl::StatusOr<std::unique_ptr<UserStore>> OpenUserStore(const std::string& url,
                                                         const StoreOptions& options) {
  absl::StatusOr<Target> target = ParseUrl(url);
  if (!target.ok()) return target.status();
  if (target->engine == Engine::kSqlite) return OpenSqliteUserStore(target->location, options);
  return OpenPostgresUserStore(target->location, options);
}

}  // namespace chat::store
