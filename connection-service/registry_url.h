#ifndef CHAT_CONNECTION_SERVICE_REGISTRY_URL_H_
#define CHAT_CONNECTION_SERVICE_REGISTRY_URL_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace chat::connection {

struct RedisAddress {
  std::string host;
  int port = 0;
};

// Where the live registry is kept (--registry):
//   memory                                   this process only (one replica)
//   redis://HOST:PORT[/DB]                   one Redis server
//   redis-sentinel://H1:P1,H2:P2,.../MASTER  the primary Sentinel names MASTER
struct RegistryUrl {
  enum class Kind { kMemory, kRedis, kSentinel };
  Kind kind = Kind::kMemory;
  RedisAddress address;                 // kRedis
  int db = 0;                           // kRedis
  std::vector<RedisAddress> sentinels;  // kSentinel
  std::string master_name;              // kSentinel
};

// InvalidArgument, with what is wrong, for any other form.
absl::StatusOr<RegistryUrl> ParseRegistryUrl(absl::string_view url);

}  // namespace chat::connection

#endif  // CHAT_CONNECTION_SERVICE_REGISTRY_URL_H_
