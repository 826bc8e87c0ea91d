#pragma once
// `vguide-host --launch N ...`: N local ranks of a data-parallel fit on the loopback
// interface, started and waited for by this process (docs/distributed.md).
#include <chrono>
#include <string>
#include <vector>

namespace vguide::host {

/// Starts `ranks` copies of this executable with `args` (the command line without
/// --launch) as ranks 0..N-1, with RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1 and a free
/// MASTER_PORT in their environment; forwards SIGINT and SIGTERM to them; waits.
/// When a rank fails, the others have `grace` to stop on their own (they notice the
/// lost rank within the collective timeout) before they are killed.
/// Returns 0 if every rank succeeded, else the exit status of the first rank that
/// failed (128 + signal for a rank ended by a signal).
/// @throw std::runtime_error if no port is free or a rank cannot be started.
int launch_local(int ranks, const std::vector<std::string>& args, std::chrono::milliseconds grace);

}  // namespace vguide::host
