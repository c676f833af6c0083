// One client process: opens its share of the connections, waits for the
// parent's GO, runs the workload on a shared clock, and reports Results.
// Control protocol on the pipes (one line each):
//   child -> parent  "READY <ok> <failed>", then Results ("... END")
//   parent -> child  "GO <t0 ns, CLOCK_MONOTONIC>", "QUIT"
#pragma once

#include "options.h"

namespace bench {

// Runs the child's whole life; returns its exit status.
int RunWorker(const Options& opts, int index, int ctl_in, int results_out);

// The [begin, end) share of `total` items for process `index` of `procs`.
inline int ShareBegin(int total, int index, int procs) {
  return static_cast<int>(static_cast<long long>(total) * index / procs);
}

}  // namespace bench
