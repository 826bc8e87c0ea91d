// vguide-host end to end: a fit that writes summary.json, and each kind of bad input
// giving one line on stderr and the documented exit code.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "host_run.hpp"
#include "test_config.hpp"

namespace {
namespace fs = std::filesystem;

using vguide::test::HostRun;
HostRun host(const std::string& args) { return vguide::test::run_host(args); }

const std::string kModels = std::string(VGUIDE_TEST_SOURCE_DIR) + "/examples/models/";
const std::string kEightSchools =
    "--model " + kModels + "eight_schools.qvr --data " + kModels + "eight_schools.json";

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// summary.json without its one run-dependent field.
nlohmann::json summary_without_wall_time(const fs::path& dir) {
  auto j = nlohmann::json::parse(read_file(dir / "summary.json"));
  j.erase("wall_time_s");
  return j;
}

class HostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("vguide_host_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(HostTest, FitsEightSchoolsAndWritesTheSummary) {
  HostRun r = host("--plugin normal " + kEightSchools + " --steps 300 --lr 0.05 --particles 4 --draws 500 --output " +
               dir_.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream in(dir_ / "summary.json");
  const auto summary = nlohmann::json::parse(in);
  EXPECT_EQ(summary["guide"], "normal");
  EXPECT_EQ(summary["steps"], 300);
  EXPECT_TRUE(std::isfinite(summary["elbo"].get<double>()));
  EXPECT_GT(summary["elbo_se"].get<double>(), 0.0);
  EXPECT_TRUE(std::isfinite(summary["psis_khat"].get<double>()));
  EXPECT_EQ(summary["stopped_because"], "steps");
  EXPECT_EQ(summary["sites"]["theta"]["derived"], true);  // the let value
  EXPECT_EQ(summary["sites"]["theta"]["q95"].size(), 8u);
  EXPECT_EQ(summary["sites"]["theta_raw"]["mean"].size(), 8u);
  const double mu = summary["sites"]["mu"]["mean"].get<double>();
  EXPECT_GT(mu, -5.0);  // the data's pooled mean is about 8, the prior's 0
  EXPECT_LT(mu, 15.0);
  EXPECT_GT(summary["sites"]["tau"]["mean"].get<double>(), 0.0);
  EXPECT_FALSE(fs::exists(dir_ / "summary.json.tmp"));
}

TEST_F(HostTest, SameSeedSameFiles) {
  const std::string args = "--plugin normal " + kEightSchools + " --steps 50 --draws 100 --seed 7 --output ";
  ASSERT_EQ(host(args + (dir_ / "a").string()).exit_code, 0);
  ASSERT_EQ(host(args + (dir_ / "b").string()).exit_code, 0);
  for (const char* file : {"draws.csv", "elbo.csv", "checkpoint.pt"})
    EXPECT_TRUE(read_file(dir_ / "a" / file) == read_file(dir_ / "b" / file)) << file << " differs";
  EXPECT_EQ(summary_without_wall_time(dir_ / "a"), summary_without_wall_time(dir_ / "b"));
}

TEST_F(HostTest, BadUsageIsExitTwoWithOneLine) {
  HostRun r = host("--bogus");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output, "vguide-host: error: unrecognised option '--bogus' (see --help)\n");
  r = host("--plugin normal --data x.json");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output, "vguide-host: error: --model is required (see --help)\n");
  r = host("--plugin normal " + kEightSchools + " --steps -1");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output, "vguide-host: error: steps is -1, but must be at least 0 (see --help)\n");
  r = host("--plugin normal --plugin delta " + kEightSchools);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output, "vguide-host: error: several families are loaded: choose one with --guide (see --help)\n");
}

TEST_F(HostTest, BadInputIsExitOneWithOneLineAndNothingOverwritten) {
  std::ofstream(dir_ / "summary.json") << "the user's earlier summary\n";
  HostRun r = host("--plugin /nonexistent/libx.so " + kEightSchools + " --output " + dir_.string());
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.output, "vguide-host: error: plugin /nonexistent/libx.so: no such file\n");
  r = host("--plugin normal " + kEightSchools + " --guide-opt init_scale=0 --output " + dir_.string() + " --overwrite");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output,
            "vguide-host: error: --guide-opt: normal: bad value for option 'init_scale': 0 is out of range (must be "
            ">0); valid options: init_scale=0.1 (see --help)\n");
  const fs::path bad_data = dir_ / "bad.json";
  std::ofstream(bad_data) << "{\"J\": 8, \"y\": [1, 2], \"sigma\": [1, 1, 1, 1, 1, 1, 1, 1]}";
  r = host("--plugin normal --model " + kModels + "eight_schools.qvr --data " + bad_data.string() + " --output " +
           dir_.string() + " --overwrite");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output.rfind("vguide-host: error: ", 0), 0u) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  std::ifstream in(dir_ / "summary.json");
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "the user's earlier summary\n");
}

TEST_F(HostTest, MinibatchesAreAFlag) {
  const std::string logistic =
      "--model " + kModels + "logistic_regression.qvr --data " + kModels + "logistic_regression.json";
  HostRun r = host("--plugin normal " + logistic + " --steps 100 --draws 100 --batch-size 10 --output " + dir_.string());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(dir_ / "summary.json"));
  r = host("--plugin normal " + kEightSchools + " --batch-size 4 --overwrite --output " + dir_.string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output.rfind("vguide-host: error: ", 0), 0u) << r.output;
  EXPECT_NE(r.output.find("theta_raw"), std::string::npos) << r.output;  // the per-row latent is named
}

// The host keeps the steps' freed memory in the heap (vguide/runtime/heap.hpp), unless
// the user set glibc's malloc tunables.
TEST_F(HostTest, FreedMemoryStaysInTheHeapUnlessTheUserTunedMalloc) {
  const std::string fit = "--plugin normal " + kEightSchools + " --steps 20 --draws 10 --log-level debug --output ";
  // Whatever the environment running the tests sets.
  const std::string unset = "env -u GLIBC_TUNABLES -u MALLOC_MMAP_THRESHOLD_ -u MALLOC_TRIM_THRESHOLD_ "
                            "-u MALLOC_TOP_PAD_ -u MALLOC_MMAP_MAX_ ";
  HostRun r = vguide::test::run_command(unset + VGUIDE_TEST_HOST + " " + fit + (dir_ / "kept").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("vguide-host: debug: heap: applied\n"), std::string::npos) << r.output;
  r = vguide::test::run_command(unset + "GLIBC_TUNABLES=glibc.malloc.top_pad=65536 " + VGUIDE_TEST_HOST + " " + fit +
                                (dir_ / "users").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("vguide-host: debug: heap: left to the user's malloc settings\n"), std::string::npos)
      << r.output;
}

const char* const kShipped[] = {"delta", "iaf", "laplace", "lowrank_mvn", "mixture", "mvn", "normal", "spline"};

TEST_F(HostTest, ListPluginsWithoutPluginListsEveryShippedFamily) {
  HostRun r = host("--list-plugins");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // One line per family, then the folders searched.
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 9) << r.output;
  EXPECT_NE(r.output.find("\nsearched: "), std::string::npos) << r.output;
  for (const std::string family : kShipped)  // name, description, library
    EXPECT_NE(r.output.find(family + "\t"), std::string::npos) << family << "\n" << r.output;
  for (const std::string family : kShipped)
    EXPECT_NE(r.output.find("\t" + std::string(VGUIDE_TEST_PLUGIN_DIR) + "/lib" + family + ".so\n"), std::string::npos)
        << family << "\n" << r.output;
}

TEST_F(HostTest, ListPluginsReportsAPluginThatFailsToLoadAndListsTheRest) {
  const fs::path bad = dir_ / "libbroken_abi_major.so";
  fs::copy_file(std::string(VGUIDE_TEST_BROKEN_PLUGIN_DIR) + "/libbroken_abi_major.so", bad);
  ::setenv("VGUIDE_PLUGIN_PATH", dir_.c_str(), 1);
  HostRun r = host("--list-plugins");
  ::unsetenv("VGUIDE_PLUGIN_PATH");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("broken\tABI version 4.0 is incompatible with this host's 3.2 (major versions differ; "
                          "rebuild the plugin against this SDK)\t" + bad.string() + "\n"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 10) << r.output;  // 8 families, the broken file, the folders
}

TEST_F(HostTest, ListsAndDescribesFamilies) {
  HostRun r = host("--plugin normal --plugin mixture --list-plugins");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("mixture\tfinite mixture of guide families"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("normal\tmean-field Normal in unconstrained space"), std::string::npos) << r.output;
  r = host("--plugin lowrank_mvn --describe lowrank_mvn");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("rank=auto"), std::string::npos) << r.output;
}

}  // namespace

namespace {

// Lines of a CSV that are not '#' comments.
std::vector<std::string> csv_rows(const fs::path& p) {
  std::ifstream in(p);
  std::vector<std::string> rows;
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line[0] != '#') rows.push_back(line);
  return rows;
}

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream s(line);
  for (std::string cell; std::getline(s, cell, ',');) out.push_back(cell);
  return out;
}

TEST_F(HostTest, DrawsCsvHasStansVariationalLayout) {
  ASSERT_EQ(host("--plugin normal " + kEightSchools + " --steps 100 --draws 50 --output " + dir_.string()).exit_code, 0);
  const auto rows = csv_rows(dir_ / "draws.csv");
  ASSERT_EQ(rows.size(), 1u + 1u + 50u);  // header, the mean row, the draws
  std::vector<std::string> expected{"lp__", "log_p__", "log_g__", "mu", "tau"};
  for (int j = 1; j <= 8; ++j) expected.push_back("theta_raw." + std::to_string(j));
  for (int j = 1; j <= 8; ++j) expected.push_back("theta." + std::to_string(j));
  EXPECT_EQ(split(rows[0]), expected);
  const auto mean_row = split(rows[1]);
  EXPECT_EQ(std::stod(mean_row[0]), 0.0);
  EXPECT_EQ(std::stod(mean_row[1]), 0.0);
  EXPECT_EQ(std::stod(mean_row[2]), 0.0);
  // The mean row is the mean of the draws, and each draw's theta is mu + tau * theta_raw.
  double mu_sum = 0;
  for (size_t i = 2; i < rows.size(); ++i) {
    const auto cells = split(rows[i]);
    ASSERT_EQ(cells.size(), expected.size());
    EXPECT_EQ(std::stod(cells[0]), 0.0);
    EXPECT_LT(std::stod(cells[1]), 0.0);  // a log joint with Normal likelihoods of sd >= 9
    const double mu = std::stod(cells[3]), tau = std::stod(cells[4]);
    EXPECT_NEAR(std::stod(cells[13]), mu + tau * std::stod(cells[5]), 1e-4 * (1 + std::abs(mu)));
    mu_sum += mu;
  }
  EXPECT_NEAR(std::stod(mean_row[3]), mu_sum / 50, 1e-6 * (1 + std::abs(mu_sum)));
  const auto elbo_rows = csv_rows(dir_ / "elbo.csv");
  ASSERT_EQ(elbo_rows.size(), 101u);
  EXPECT_EQ(elbo_rows[0], "step,elbo");
  EXPECT_EQ(split(elbo_rows[100])[0], "100");
}

TEST_F(HostTest, RstanReadsTheDraws) {
  ASSERT_EQ(host("--plugin normal " + kEightSchools + " --steps 100 --draws 40 --output " + dir_.string()).exit_code, 0);
  const std::string script = "fit <- suppressMessages(rstan::read_stan_csv('" + (dir_ / "draws.csv").string() +
                             "')); m <- as.matrix(fit); cat(nrow(m), ncol(m), colnames(m)[c(1, 3, 5, 13, 20, 21)], sep = ' ')";
  const HostRun r = vguide::test::run_command("Rscript -e \"" + script + "\"");
  ASSERT_EQ(r.exit_code, 0) << "Rscript with rstan is needed (scripts/setup.sh installs r-cran-rstan): " << r.output;
  const std::string& out = r.output;
  // 40 draws (the mean row is not one); log_p__, log_g__, mu, tau, theta_raw[8],
  // theta[8], then lp__: 21 columns.
  EXPECT_EQ(out.substr(out.find_last_of('\n') + 1), "40 21 log_p__ mu theta_raw[1] theta[1] theta[8] lp__") << out;
}

TEST_F(HostTest, ResumeEqualsAnUninterruptedRunBitForBit) {
  const std::string args = "--plugin normal " + kEightSchools + " --draws 100 --elbo-particles 200 --seed 3 --quiet ";
  ASSERT_EQ(host(args + "--steps 200 --output " + (dir_ / "whole").string()).exit_code, 0);
  ASSERT_EQ(host(args + "--steps 120 --output " + (dir_ / "parts").string()).exit_code, 0);
  HostRun r = host(args + "--steps 200 --resume " + (dir_ / "parts").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* file : {"draws.csv", "elbo.csv", "checkpoint.pt"})
    EXPECT_TRUE(read_file(dir_ / "whole" / file) == read_file(dir_ / "parts" / file)) << file << " differs";
  EXPECT_EQ(summary_without_wall_time(dir_ / "whole"), summary_without_wall_time(dir_ / "parts"));
  // A finished fit is drawn from again without refitting.
  r = host(args + "--steps 200 --resume " + (dir_ / "whole").string() + " --output " + (dir_ / "again").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(summary_without_wall_time(dir_ / "again")["steps"], 200);
}

TEST_F(HostTest, ResumeAgainstOtherDataIsRefused) {
  ASSERT_EQ(host("--plugin normal " + kEightSchools + " --steps 20 --draws 10 --output " + dir_.string()).exit_code, 0);
  const fs::path other = dir_ / "other.json";
  std::ofstream(other) << R"({"J": 8, "y": [28, 8, -3, 7, -1, 1, 18, 13], "sigma": [15, 10, 16, 11, 9, 11, 10, 19]})";
  const std::string before = read_file(dir_ / "summary.json");
  HostRun r = host("--plugin normal --model " + kModels + "eight_schools.qvr --data " + other.string() +
                   " --steps 40 --resume " + dir_.string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output.rfind("vguide-host: error: --resume: checkpoint " + (dir_ / "checkpoint.pt").string() +
                               ": the data differs (checkpoint: ",
                           0),
            0u)
      << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  EXPECT_EQ(read_file(dir_ / "summary.json"), before);
  r = host("--plugin mvn " + kEightSchools + " --steps 40 --resume " + dir_.string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find(": the guide family differs (checkpoint: normal, now: mvn)"), std::string::npos) << r.output;
}

TEST_F(HostTest, SigintMidFitLeavesValidFilesAndAResumableCheckpoint) {
  const std::string command = std::string(VGUIDE_TEST_HOST) + " --plugin normal " + kEightSchools +
                              " --steps 100000000 --convergence none --draws 20 --quiet --output " + dir_.string();
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", ("exec " + command + " 2>/dev/null").c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Wait until the fit is under way (the model is parsed and steps are running).
  ::usleep(2'500'000);
  ::kill(pid, SIGINT);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130);
  const auto summary = nlohmann::json::parse(read_file(dir_ / "summary.json"));
  EXPECT_EQ(summary["stopped_because"], "interrupted");
  const int64_t done = summary["steps"].get<int64_t>();
  EXPECT_GT(done, 0);
  EXPECT_EQ(csv_rows(dir_ / "draws.csv").size(), 22u);
  EXPECT_EQ(csv_rows(dir_ / "elbo.csv").size(), static_cast<size_t>(done + 1));
  for (const auto& entry : fs::directory_iterator(dir_)) EXPECT_NE(entry.path().extension(), ".tmp");
  HostRun r = host("--plugin normal " + kEightSchools + " --steps " + std::to_string(done + 10) +
                   " --convergence none --draws 20 --quiet --resume " + dir_.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(nlohmann::json::parse(read_file(dir_ / "summary.json"))["steps"], done + 10);
}

TEST_F(HostTest, NonFiniteFitStopsWithExitFourAndWritesWhatItHas) {
  const fs::path program = dir_ / "blowup.qvr", data = dir_ / "blowup.json";
  std::ofstream(program) << "object One : 1\nprogram blowup : One -> One\n    x <- Normal(0.0, 1.0)\n"
                            "    let s = exp(exp(exp(x * x + 10.0)))\n    observe y ~ Normal(0.0, s)\n"
                            "    return y\noutput blowup\n";
  std::ofstream(data) << R"({"y": [1.0]})";
  HostRun r = host("--plugin normal --model " + program.string() + " --data " + data.string() +
                   " --draws 10 --quiet --init default --output " + (dir_ / "out").string());
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_EQ(r.output,
            "vguide-host: error: the fit stopped after 20 non-finite steps in a row at step 20: the log density of "
            "site 'y' is not finite\n");
  const auto summary = nlohmann::json::parse(read_file(dir_ / "out" / "summary.json"));
  EXPECT_EQ(summary["stopped_because"], "non_finite");
  EXPECT_EQ(summary["non_finite_steps"], 20);
  EXPECT_TRUE(fs::exists(dir_ / "out" / "checkpoint.pt"));
}

TEST_F(HostTest, EveryCliErrorHasItsLineAndExitCode) {
  struct Case {
    std::string args;
    int code;
    std::string message;
  };
  const std::string out = " --output " + (dir_ / "never").string();
  const std::vector<Case> cases{
      {"--bogus", 2, "unrecognised option '--bogus' (see --help)"},
      {"--plugin normal " + kEightSchools + " --optimizer lbfgs" + out, 2,
       "--optimizer: unknown optimizer 'lbfgs'; valid: adam, adamw, sgd, rmsprop (see --help)"},
      {"--plugin normal " + kEightSchools + " --lr -1" + out, 2,
       "lr is -1, but must be a positive number (see --help)"},
      {"--plugin normal " + kEightSchools + " --objective iwae --stl" + out, 2,
       "sticking the landing applies to the ELBO only, not to IWAE (see --help)"},
      {"--plugin normal " + kEightSchools + " --init value" + out, 2,
       "--init value and --init-file go together (see --help)"},
      {"--plugin normal " + kEightSchools + " --schedule linear" + out, 2,
       "--schedule: unknown schedule 'linear'; valid: constant, exponential, step, cosine (see --help)"},
      {"--plugin normal " + kEightSchools + " --guide-opt scale=2" + out, 2,
       "--guide-opt: normal: unknown option 'scale'; valid options: init_scale=0.1 (see --help)"},
      {"--plugin normal " + kEightSchools + " --log-level loud" + out, 2,
       "--log-level: unknown level 'loud'; valid: trace, debug, info, warn, error, off (see --help)"},
      {"--plugin normal --model /nonexistent/m.qvr --data x.json" + out, 1, "--model /nonexistent/m.qvr: cannot be read"},
      {"--plugin libnosuch.so " + kEightSchools + out, 3, ""},
      {"--plugin " + (dir_ / "fake.so").string() + " " + kEightSchools + out, 3,
       "plugin " + (dir_ / "fake.so").string() + ": not a shared library (no ELF header)"},
  };
  std::ofstream(dir_ / "fake.so") << "not a library";
  for (const auto& c : cases) {
    HostRun r = host(c.args);
    EXPECT_EQ(r.exit_code, c.code) << c.args << "\n" << r.output;
    if (!c.message.empty()) {
      EXPECT_EQ(r.output, "vguide-host: error: " + c.message + "\n") << c.args;
    }
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  }
  EXPECT_FALSE(fs::exists(dir_ / "never"));
}

TEST_F(HostTest, APreviousRunIsNotOverwrittenWithoutOverwrite) {
  const std::string args = "--plugin normal " + kEightSchools + " --steps 10 --draws 10 --quiet --output " + dir_.string();
  ASSERT_EQ(host(args).exit_code, 0);
  const std::string before = read_file(dir_ / "draws.csv");
  HostRun r = host(args + " --seed 9");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "vguide-host: error: --output " + dir_.string() +
                          " already holds a run's files (summary.json); pass --overwrite or choose another folder\n");
  EXPECT_EQ(read_file(dir_ / "draws.csv"), before);
  EXPECT_EQ(host(args + " --seed 9 --overwrite").exit_code, 0);
  EXPECT_NE(read_file(dir_ / "draws.csv"), before);
}

TEST_F(HostTest, BareFileNamePluginIsFoundFromAnyFolder) {
  // The README's user story: `--plugin libiaf.so` with nothing in the environment.
  const std::string command = "cd " + dir_.string() + " && env -u VGUIDE_PLUGIN_PATH " + VGUIDE_TEST_HOST +
                              " --plugin libnormal.so --model " + kModels + "eight_schools.qvr --data " + kModels +
                              "eight_schools.json --steps 10 --draws 10 --quiet --output out 2>&1";
  EXPECT_EQ(std::system(command.c_str()), 0);
  EXPECT_TRUE(fs::exists(dir_ / "out" / "draws.csv"));
}

}  // namespace

namespace {

// Issue #6 asks that init strategies, checkpoint/resume, draws and summaries work for
// every family unchanged: the same resume-equals-uninterrupted check, per family.
TEST_F(HostTest, EveryFamilyResumesBitForBitWithAnInitStrategy) {
  const std::vector<std::pair<std::string, std::string>> families{
      {"mvn", "--init median"},           {"lowrank_mvn", "--init mean --guide-opt rank=2"},
      {"laplace", "--init uniform"},      {"iaf", "--init sample"},
      {"spline", "--init median"},        {"mixture", "--guide-opt components=normal,mvn --plugin normal --plugin mvn "
                                                      "--guide mixture"}};
  for (const auto& [family, extra] : families) {
    const fs::path whole = dir_ / (family + "_whole"), parts = dir_ / (family + "_parts");
    const std::string args = "--plugin " + family + " " + extra + " " + kEightSchools +
                             " --draws 50 --elbo-particles 100 --seed 5 --quiet ";
    HostRun r = host(args + "--steps 60 --output " + whole.string());
    ASSERT_EQ(r.exit_code, 0) << family << ": " << r.output;
    ASSERT_EQ(host(args + "--steps 35 --output " + parts.string()).exit_code, 0) << family;
    r = host(args + "--steps 60 --resume " + parts.string());
    ASSERT_EQ(r.exit_code, 0) << family << ": " << r.output;
    EXPECT_TRUE(read_file(whole / "draws.csv") == read_file(parts / "draws.csv")) << family << ": draws.csv differs";
    EXPECT_EQ(summary_without_wall_time(whole), summary_without_wall_time(parts)) << family;
    const auto summary = summary_without_wall_time(whole);
    EXPECT_EQ(summary["sites"]["theta"]["mean"].size(), 8u) << family;
    EXPECT_EQ(summary["settings"]["init"], extra.rfind("--init ", 0) == 0 ? extra.substr(7, extra.find(' ', 7) - 7)
                                                                          : std::string("pathfinder"))
        << family;
  }
  const auto laplace = summary_without_wall_time(dir_ / "laplace_parts");
  EXPECT_EQ(laplace["diagnostics"]["laplace.fitted"], 1.0);  // after_fit ran once, at step 60
}

}  // namespace

namespace {

TEST_F(HostTest, PsisResampledDrawsAreRowsOfTheDraws) {
  HostRun r = host("--plugin normal " + kEightSchools + " --steps 100 --draws 200 --psis-resample --quiet --output " +
                   dir_.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto draws = csv_rows(dir_ / "draws.csv"), resampled = csv_rows(dir_ / "draws_psis.csv");
  ASSERT_EQ(resampled.size(), draws.size());
  EXPECT_EQ(resampled[0], draws[0]);  // the same header
  const std::set<std::string> rows(draws.begin() + 2, draws.end());
  for (size_t i = 2; i < resampled.size(); ++i) EXPECT_EQ(rows.count(resampled[i]), 1u) << resampled[i];
  // Importance resampling repeats the heavier draws.
  EXPECT_LT(std::set<std::string>(resampled.begin() + 2, resampled.end()).size(), 200u);
}

}  // namespace
