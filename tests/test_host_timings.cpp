// vguide-host --timings (host/timings.hpp, docs/cli.md): the phases of a run, one
// stderr line each, in the order the run takes them, none negative, adding up to the
// total; none without the flag. Timings themselves are never asserted (bench/startup.R
// measures them).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <regex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "host_run.hpp"

namespace {

using vguide::test::run_host;

// ("start to main", 612.0), ... in the order printed.
std::vector<std::pair<std::string, double>> phases(const std::string& output) {
  static const std::regex line("^vguide-host: timing: (.+): ([0-9]+(\\.[0-9]+)?) ms$");
  std::vector<std::pair<std::string, double>> out;
  std::istringstream in(output);
  for (std::string l; std::getline(in, l);) {
    std::smatch m;
    if (std::regex_match(l, m, line)) out.emplace_back(m[1], std::stod(m[2]));
  }
  return out;
}

std::vector<std::string> names(const std::vector<std::pair<std::string, double>>& ps) {
  std::vector<std::string> out;
  for (const auto& p : ps) out.push_back(p.first);
  return out;
}

std::string models() { return std::string(VGUIDE_TEST_SOURCE_DIR) + "/examples/models/"; }

// Every phase after "start to main" is timed from the end of the one before, so they
// add up to the total (each printed to 0.1 ms below 100 ms, else to 1 ms).
void expect_consistent(const std::vector<std::pair<std::string, double>>& ps, const std::string& output) {
  ASSERT_GE(ps.size(), 3u) << output;
  double sum = 0;
  for (size_t i = 0; i + 1 < ps.size(); ++i) {
    EXPECT_GE(ps[i].second, 0.0) << ps[i].first;
    sum += ps[i].second;
  }
  // From /proc/self/stat: a wrong field would read as zero ticks (the machine's
  // uptime) or a byte count, not as the few hundred ms that loading takes.
  EXPECT_GT(ps.front().second, 0.0) << output;
  EXPECT_LT(ps.front().second, 60e3) << output;
  EXPECT_NEAR(ps.back().second, sum, 0.5 * static_cast<double>(ps.size()) + 0.1) << output;
}

TEST(HostTimings, ADefaultFitListsEveryPhaseInOrder) {
  const auto dir = std::filesystem::temp_directory_path() / ("vguide_timings_" + std::to_string(::getpid()));
  const auto r = run_host("--timings --plugin normal --model " + models() + "eight_schools.qvr --data " + models() +
                          "eight_schools.json --steps 300 --convergence none --draws 100 --quiet --output " +
                          dir.string());
  std::filesystem::remove_all(dir);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto ps = phases(r.output);
  EXPECT_EQ(names(ps), (std::vector<std::string>{"start to main", "options", "plugins", "fit settings",
                                                 "model and data", "output folder", "guide and start", "steps",
                                                 "finish", "outputs", "teardown", "total"}))
      << r.output;
  expect_consistent(ps, r.output);
}

TEST(HostTimings, ARunThatFailsListsThePhasesItReached) {
  const auto r = run_host("--timings --plugin normal --model /nonexistent/m.qvr --data " + models() +
                          "eight_schools.json");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  const auto ps = phases(r.output);
  EXPECT_EQ(names(ps), (std::vector<std::string>{"start to main", "options", "plugins", "fit settings", "teardown",
                                                 "total"}))
      << r.output;
  expect_consistent(ps, r.output);
}

TEST(HostTimings, NoTimingLinesWithoutTheFlag) {
  const auto r = run_host("--version");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("timing:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("vguide-host "), std::string::npos) << r.output;
}

}  // namespace
