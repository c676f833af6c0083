#ifndef CHAT_EDGE_HTTP_CLIENT_H_
#define CHAT_EDGE_HTTP_CLIENT_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace chat::edge {

struct HttpReply {
  long status = 0;
  std::string body;
};

struct HttpCall {
  std::string method = "GET";  // GET or POST
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // POST only
  absl::Duration timeout = absl::Seconds(5);
  size_t max_bytes = 1 << 20;
  // 0: none (a credential in a header must not follow a redirect). Only to
  // http/https.
  int max_redirects = 0;
};

// One blocking HTTP(S) call with libcurl: TLS verified, http/https only,
// body capped. Any HTTP status is a reply; only transport failures (connect,
// timeout, TLS) are errors, as Unavailable, and an oversized body is
// ResourceExhausted. Call it off the I/O threads.
absl::StatusOr<HttpReply> PerformHttp(const HttpCall& call);

}  // namespace chat::edge

#endif  // CHAT_EDGE_HTTP_CLIENT_H_
