// The sync workload's client process: one sender stores --messages for one
// recipient through the edge (closed loop, every send with a request_id, the
// recipient online and counting live frames), then a fresh connection of the
// recipient catches up with `sync` pages of --page until `more` is false, and
// checks that it got useq 1..N exactly once each, in order, with the right text.
// Besides the control protocol of worker.h it writes "PHASE <name>" lines
// (filled, connected, synced) and waits for the parent's "NEXT" after each, so
// the parent samples the servers' CPU exactly between the phases.
#pragma once

#include "options.h"

namespace bench {

int RunSyncWorker(const Options& opts, int ctl_in, int results_out);

}  // namespace bench
