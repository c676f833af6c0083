// What one client process measured, sent to the parent over a pipe as text
// and merged there.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>

#include "histogram.h"

namespace bench {

struct Results {
  int64_t conns_ok = 0;
  int64_t conns_failed = 0;
  int64_t disconnects = 0;  // open connections that the server closed or lost
  int64_t pings = 0;        // protocol pings received (and answered)
  int64_t sent = 0;
  int64_t received = 0;
  int64_t received_in_window = 0;
  int64_t out_of_order = 0;               // a sequence number lower than one already seen
  int64_t gaps = 0;                       // sequence numbers skipped (lost or late)
  int64_t t_first = 0;                    // storm: GO time; dm: first send
  int64_t t_last = 0;                     // storm: last connection open
  Histogram latency;                      // ns: dm send->receive, storm connect()->hello
  std::map<std::string, int64_t> events;  // "error:rate_limited", "close:4008", ...
  std::map<std::string, int64_t> values;  // workload figures (sync: "sync_ns", "duplicates", ...)

  std::string Serialize() const;
  // Reads lines up to "END"; false on EOF before it.
  bool Read(FILE* in);
  void Merge(const Results& other);
};

// Writes all of `text` to a pipe (the child -> parent channel).
void WriteAll(int fd, const std::string& text);

}  // namespace bench
