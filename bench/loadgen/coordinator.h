// The parent process: forks the client processes, drives the shared timeline,
// samples the servers' CPU and memory, merges results and prints the report
// (a human table, then one JSON line).
#pragma once

#include "options.h"

namespace bench {

int RunCoordinator(Options opts);

}  // namespace bench
