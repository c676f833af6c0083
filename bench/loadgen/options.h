// Everything the command line sets; main.cc fills it, nothing else parses flags.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "proc_stats.h"

namespace bench {

struct Options {
  std::string workload;  // dm | idle | storm | sync | fanout
  struct Target {
    std::string host;
    int port = 0;
    std::string path = "/";
  };
  std::vector<Target> targets;  // connection i goes to targets[i % size] (several edges)
  std::string label;            // server name echoed into the JSON line
  std::string name_prefix;      // user names are <prefix>s<i>, <prefix>r<i>, <prefix>c<i>
  bool wait_hello = true;       // our edge sends "hello"; the peers do not
  int procs = 1;                // client processes (each may hold < 20,000 files)
  int source_addrs = 16;        // bind to 127.0.0.2 ... 127.0.0.(1+N); 0 = let the kernel pick
  double connect_timeout_s = 60;

  // dm
  std::string mode = "closed";  // closed | open
  int pairs = 100;
  int window = 16;         // closed loop: messages in flight per sender (sync: while filling)
  double rate = 5000;      // open loop: offered messages/s, all senders together
  int message_bytes = 64;  // length of the "message" string
  double warmup_s = 1;
  double duration_s = 5;
  double drain_s = 2;

  // idle, storm
  int conns = 1000;
  int concurrency = 200;  // handshakes in flight, all processes together
  double settle_s = 1;    // idle: wait after the last connect before measuring
  double hold_s = 5;      // idle: window in which idle CPU is measured

  // sync: one sender stores `messages` for one recipient (closed loop, with
  // request_id), then a fresh connection of the recipient syncs them in pages.
  int messages = 10000;
  int page = 500;                // the sync request's limit
  double phase_timeout_s = 120;  // each of: filling, connecting, syncing

  std::vector<ServerProcess> servers;
};

}  // namespace bench
