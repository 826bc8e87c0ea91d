#pragma once
/// Turns a results file (JSON lines of the driver) into markdown tables and the
/// data files the gnuplot script (bench/plot.gp) draws.
#include <ostream>
#include <string>

namespace vguide::bench {

/// The Stan ADVI algorithm timed beside a configuration (bench/stan/stan_column.R):
/// "meanfield" beside the `normal` guide, "fullrank" beside `mvn`, full batch only
/// (Stan has no minibatch ADVI); "" where Stan has no peer.
std::string stan_algorithm(const std::string& guide, bool full_batch);

/// Prints one markdown table per table group and per curve to `out`, and writes
/// `<plot_dir>/<curve>_<series>.dat` (columns: x, µs per step, floor µs, ratio, and
/// the same three in CPU time) for
/// every curve series if `plot_dir` is not empty. Every table carries a "Stan ADVI"
/// column (and "× Stan", the framework's wall time over Stan's) from `stan_path`,
/// stan_column.R's JSON lines; with `stan_path` empty the column says that Stan was
/// not measured.
/// @throw std::runtime_error naming the file and line of a record it cannot read.
void write_report(const std::string& results_path, const std::string& plot_dir, const std::string& stan_path,
                  std::ostream& out);

}  // namespace vguide::bench
