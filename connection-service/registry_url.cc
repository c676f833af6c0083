#include "connection-service/registry_url.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace chat::connection {
namespace {

absl::Status Bad(absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("--registry: ", why,
                   " (want memory, redis://HOST:PORT[/DB] or "
                   "redis-sentinel://H1:P1,H2:P2,H3:P3/MASTER_NAME)"));
}

// HOST:PORT, or [IPv6]:PORT.
absl::StatusOr<RedisAddress> ParseAddress(absl::string_view text) {
  RedisAddress address;
  absl::string_view port;
  if (absl::ConsumePrefix(&text, "[")) {
    const size_t close = text.find("]:");
    if (close == absl::string_view::npos) return Bad("an IPv6 address needs [ADDR]:PORT");
    address.host = std::string(text.substr(0, close));
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == absl::string_view::npos) return Bad("an address needs HOST:PORT");
    address.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
  }
  if (address.host.empty()) return Bad("an address has no host");
  if (address.host.find_first_of("/@ ,") != std::string::npos) {
    return Bad("a host may not contain '/', '@', ',' or spaces");
  }
  if (!absl::SimpleAtoi(port, &address.port) || address.port < 1 || address.port > 65535) {
    return Bad("a port must be 1-65535");
  }
  return address;
}

}  // namespace

absl::StatusOr<RegistryUrl> ParseRegistryUrl(absl::string_view url) {
  RegistryUrl result;
  if (url == "memory") return result;
  if (absl::ConsumePrefix(&url, "redis://")) {
    result.kind = RegistryUrl::Kind::kRedis;
    absl::string_view address = url;
    const size_t slash = url.find('/');
    if (slash != absl::string_view::npos) {
      address = url.substr(0, slash);
      const absl::string_view db = url.substr(slash + 1);
      if (!absl::SimpleAtoi(db, &result.db) || result.db < 0 || db.empty() || db[0] == '+') {
        return Bad("the database after '/' must be a number");
      }
    }
    absl::StatusOr<RedisAddress> parsed = ParseAddress(address);
    if (!parsed.ok()) return parsed.status();
    result.address = *std::move(parsed);
    return result;
  }
  if (absl::ConsumePrefix(&url, "redis-sentinel://")) {
    result.kind = RegistryUrl::Kind::kSentinel;
    const size_t slash = url.rfind('/');
    if (slash == absl::string_view::npos) return Bad("a Sentinel URL ends with /MASTER_NAME");
    result.master_name = std::string(url.substr(slash + 1));
    if (result.master_name.empty()) return Bad("the master name is empty");
    for (absl::string_view part : absl::StrSplit(url.substr(0, slash), ',')) {
      absl::StatusOr<RedisAddress> parsed = ParseAddress(part);
      if (!parsed.ok()) return parsed.status();
      result.sentinels.push_back(*std::move(parsed));
    }
    return result;
  }
  return Bad("unknown form");
}

}  // namespace chat::connection
