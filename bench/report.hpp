#pragma once
/// Turns a results file (JSON lines of the driver) into markdown tables and the
/// data files the gnuplot script (bench/plot.gp) draws.
#include <ostream>
#include <string>

namespace vguide::bench {

/// Prints one markdown table per table group and per curve to `out`, and writes
/// `<plot_dir>/<curve>_<series>.dat` (columns: x, µs per step, floor µs, ratio, and
/// the same three in CPU time) for
/// every curve series if `plot_dir` is not empty.
/// @throw std::runtime_error naming the file and line of a record it cannot read.
void write_report(const std::string& results_path, const std::string& plot_dir, std::ostream& out);

}  // namespace vguide::bench
