// vguide-host as several processes on loopback: --launch, one process per rank,
// per-rank data files, resume, a killed rank, ranks that disagree, and the
// distributed flags' errors.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "host_run.hpp"
#include "test_config.hpp"
#include "vguide/runtime/distributed.hpp"

namespace {

namespace fs = std::filesystem;
using vguide::test::HostRun;
using vguide::free_loopback_port;
using vguide::test::run_host;

const std::string kModels = std::string(VGUIDE_TEST_SOURCE_DIR) + "/examples/models/";
const std::string kLogistic = "--plugin normal --model " + kModels + "logistic_regression.qvr --data " + kModels +
                              "logistic_regression.json";

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

nlohmann::json summary(const fs::path& dir) { return nlohmann::json::parse(read_file(dir / "summary.json")); }

// `vguide-host args` in the background, stdout and stderr to `log`.
pid_t spawn_host(const std::string& args, const fs::path& log) {
  const std::string command = "exec " + std::string(VGUIDE_TEST_HOST) + " " + args + " >" + log.string() + " 2>&1";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

int exit_status(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Every number in a site's mean, flattened.
std::vector<double> flat(const nlohmann::json& j) {
  if (j.is_number()) return {j.get<double>()};
  std::vector<double> out;
  for (const auto& e : j) {
    auto inner = flat(e);
    out.insert(out.end(), inner.begin(), inner.end());
  }
  return out;
}

class DistributedHost : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("vguide_dist_host_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(DistributedHost, LaunchedRanksFitWhatOneProcessFits) {
  const std::string fit = kLogistic + " --steps 200 --particles 2 --seed 3 --draws 50 --elbo-particles 50 --quiet";
  HostRun one = run_host(fit + " --output " + (dir_ / "one").string());
  ASSERT_EQ(one.exit_code, 0) << one.output;
  for (const int ranks : {2, 4}) {
    const fs::path out = dir_ / ("launch" + std::to_string(ranks));
    HostRun r = run_host("--launch " + std::to_string(ranks) + " " + fit + " --output " + out.string());
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto a = summary(dir_ / "one"), b = summary(out);
    // Every latent and every `let` (eta has one value per row, gathered from the ranks).
    ASSERT_EQ(a["sites"].size(), b["sites"].size());
    for (const auto& [name, site] : a["sites"].items()) {
      const auto x = flat(site["mean"]), y = flat(b["sites"][name]["mean"]);
      ASSERT_EQ(x.size(), y.size()) << name;
      double scale = 0.0;
      for (double v : x) scale = std::max(scale, std::abs(v));
      for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(x[i], y[i], 1e-5 * scale) << name << "[" << i << "]";
    }
    EXPECT_NEAR(a["elbo"].get<double>(), b["elbo"].get<double>(), 1e-5 * std::abs(a["elbo"].get<double>()));
    // Rank 0 alone wrote, and only finished files.
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(out)) files.push_back(e.path().filename().string());
    std::sort(files.begin(), files.end());
    EXPECT_EQ(files, (std::vector<std::string>{"checkpoint.pt", "draws.csv", "elbo.csv", "summary.json"}));
  }
}

TEST_F(DistributedHost, PerRankDataFilesFitWhatTheSharedFileFits) {
  // The example's 60 rows as two files of 30, the blocks --launch 2 cuts from one file.
  const auto data = nlohmann::json::parse(read_file(kModels + "logistic_regression.json"));
  for (int r = 0; r < 2; ++r) {
    nlohmann::json part = data;
    part["N"] = 30;
    part["X"] = nlohmann::json(std::vector<nlohmann::json>(data["X"].begin() + 30 * r, data["X"].begin() + 30 * (r + 1)));
    part["y"] = nlohmann::json(std::vector<nlohmann::json>(data["y"].begin() + 30 * r, data["y"].begin() + 30 * (r + 1)));
    std::ofstream(dir_ / ("part" + std::to_string(r) + ".json")) << part.dump();
  }
  // One start for both (Pathfinder's start differs by design: docs/distributed.md).
  const std::string fit = " --steps 100 --seed 4 --draws 30 --elbo-particles 30 --quiet --launch 2 --init uniform";
  HostRun shared = run_host(kLogistic + fit + " --output " + (dir_ / "shared").string());
  ASSERT_EQ(shared.exit_code, 0) << shared.output;
  HostRun split = run_host("--plugin normal --model " + kModels + "logistic_regression.qvr --data " +
                           (dir_ / "part{rank}.json").string() + fit + " --output " + (dir_ / "split").string());
  ASSERT_EQ(split.exit_code, 0) << split.output;
  // The same rows on the same ranks: the same arithmetic, bit for bit.
  EXPECT_EQ(summary(dir_ / "shared")["sites"], summary(dir_ / "split")["sites"]);
  EXPECT_EQ(read_file(dir_ / "shared" / "draws.csv"), read_file(dir_ / "split" / "draws.csv"));
}

TEST_F(DistributedHost, ResumedMinibatchFitIsBitIdenticalAndNeedsTheSameRanks) {
  const std::string fit = kLogistic + " --batch-size 7 --seed 6 --draws 20 --elbo-particles 20 --quiet --launch 2";
  HostRun whole = run_host(fit + " --steps 60 --output " + (dir_ / "whole").string());
  ASSERT_EQ(whole.exit_code, 0) << whole.output;
  HostRun first = run_host(fit + " --steps 30 --output " + (dir_ / "halves").string());
  ASSERT_EQ(first.exit_code, 0) << first.output;
  HostRun second = run_host(fit + " --steps 60 --resume " + (dir_ / "halves").string());
  ASSERT_EQ(second.exit_code, 0) << second.output;
  // Every rank's row stream came back from rank 0's checkpoint.
  EXPECT_EQ(read_file(dir_ / "whole" / "draws.csv"), read_file(dir_ / "halves" / "draws.csv"));
  EXPECT_EQ(read_file(dir_ / "whole" / "elbo.csv"), read_file(dir_ / "halves" / "elbo.csv"));

  const std::string before = read_file(dir_ / "halves" / "checkpoint.pt");
  HostRun three = run_host(kLogistic + " --batch-size 7 --seed 6 --quiet --launch 3 --steps 90 --resume " +
                           (dir_ / "halves").string());
  EXPECT_EQ(three.exit_code, 1);
  EXPECT_NE(three.output.find("vguide-host[rank 0]: error: --resume: checkpoint " +
                              (dir_ / "halves" / "checkpoint.pt").string() +
                              " was written by a fit on 2 ranks, this one has 3 (resume with the same number of ranks)\n"),
            std::string::npos)
      << three.output;
  EXPECT_EQ(read_file(dir_ / "halves" / "checkpoint.pt"), before);
}

TEST_F(DistributedHost, AKilledRankStopsTheOthersInBoundedTimeAndTheCheckpointSurvives) {
  const std::string master = "--world-size 2 --master 127.0.0.1:" + std::to_string(free_loopback_port());
  const std::string fit = kLogistic + " --steps 100000000 --checkpoint-every 25 --dist-timeout 20 --quiet " + master +
                          " --output " + (dir_ / "out").string();
  const pid_t rank0 = spawn_host(fit + " --rank 0", dir_ / "rank0.log");
  const pid_t rank1 = spawn_host(fit + " --rank 1", dir_ / "rank1.log");
  const auto checkpoint = dir_ / "out" / "checkpoint.pt";
  for (int i = 0; i < 600 && !fs::exists(checkpoint); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(fs::exists(checkpoint)) << read_file(dir_ / "rank0.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ::kill(rank1, SIGKILL);
  const auto start = std::chrono::steady_clock::now();
  const int status = exit_status(rank0);
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  exit_status(rank1);
  EXPECT_EQ(status, 5);
  EXPECT_LT(waited, 30.0);  // the lost connection at once, then a few seconds for the survivors' notes
  const std::string log = read_file(dir_ / "rank0.log");
  EXPECT_TRUE(std::regex_match(log, std::regex("vguide-host\\[rank 0\\]: error: distributed fit: rank 1 stopped answering "
                                               "during step [0-9]+ \\(rank 0 saw: [^\n]*\\)\n")))
      << log;
  // The last checkpoint rank 0 wrote is whole: a new pair of ranks resumes from it.
  for (const auto& e : fs::directory_iterator(dir_ / "out")) EXPECT_NE(e.path().extension(), ".tmp");
  std::smatch steps;
  const std::string bytes = read_file(checkpoint);
  ASSERT_TRUE(std::regex_search(bytes, steps, std::regex("\"steps_done\":([0-9]+)")));
  const int64_t done = std::stoll(steps[1]);
  EXPECT_EQ(done % 25, 0);
  HostRun resumed = run_host(kLogistic + " --launch 2 --draws 20 --elbo-particles 20 --quiet --checkpoint-every 25 "
                                         "--dist-timeout 20 --steps " +
                             std::to_string(done + 10) + " --resume " + (dir_ / "out").string());
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(summary(dir_ / "out")["steps"], done + 10);
}

TEST_F(DistributedHost, RanksThatDisagreeAreRefusedAtStartUp) {
  const std::string master = "--world-size 2 --master 127.0.0.1:" + std::to_string(free_loopback_port());
  const std::string fit = kLogistic + " --steps 50 --quiet --dist-timeout 20 " + master + " --output " + (dir_ / "out").string();
  const pid_t rank0 = spawn_host(fit + " --rank 0 --guide-opt init_scale=0.1", dir_ / "rank0.log");
  const pid_t rank1 = spawn_host(fit + " --rank 1 --guide-opt init_scale=0.2", dir_ / "rank1.log");
  EXPECT_EQ(exit_status(rank0), 5);
  EXPECT_EQ(exit_status(rank1), 5);
  for (int r = 0; r < 2; ++r)
    EXPECT_EQ(read_file(dir_ / ("rank" + std::to_string(r) + ".log")),
              "vguide-host[rank " + std::to_string(r) +
                  "]: error: rank 1 differs from rank 0 in the guide options (rank 0: init_scale=0.1, rank 1: "
                  "init_scale=0.2)\n");
  EXPECT_FALSE(fs::exists(dir_ / "out" / "summary.json"));
}

TEST_F(DistributedHost, ARankAloneGivesUpAtTheRendezvousTimeout) {
  const std::string port = std::to_string(free_loopback_port());
  const auto start = std::chrono::steady_clock::now();
  HostRun r = run_host(kLogistic + " --steps 5 --quiet --rank 0 --world-size 2 --master 127.0.0.1:" + port +
                       " --dist-timeout 2 --output " + (dir_ / "out").string());
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_EQ(r.output, "vguide-host[rank 0]: error: rendezvous at 127.0.0.1:" + port + ": rank 1 did not arrive within 2 s\n");
  EXPECT_LT(waited, 20.0);
}

TEST_F(DistributedHost, DistributedSettingsErrorsHaveTheirLineAndExitCode) {
  struct Case {
    std::string args;
    int code;
    std::string line;  // must appear in the output
  };
  const std::string out = " --output " + (dir_ / "out").string();
  const std::vector<Case> cases = {
      {kLogistic + " --launch 0", 2, "vguide-host: error: --launch is 0, but must be at least 1 (see --help)\n"},
      {kLogistic + " --launch 2 --rank 0", 2,
       "vguide-host: error: --launch starts its own ranks; drop --rank, --world-size and --master (see --help)\n"},
      {kLogistic + " --rank 2 --world-size 2", 2,
       "vguide-host: error: distributed settings: rank is 2, but must be in [0, 1] for a world size of 2 (see --help)\n"},
      {kLogistic + " --master nohost", 2,
       "vguide-host: error: --master is 'nohost', but must be HOST:PORT with a port in [1, 65535] (see --help)\n"},
      {kLogistic + " --dist-timeout 0", 2,
       "vguide-host: error: --dist-timeout is 0, but must be a positive number of seconds (see --help)\n"},
      {"--launch 2 --plugin normal --model " + kModels + "eight_schools.qvr --data " + kModels + "eight_schools.json" + out,
       1,
       "vguide-host[rank 1]: error: --model " + kModels +
           "eight_schools.qvr: latent 'theta_raw' has one value per data row, so the 8 rows cannot be split between "
           "ranks (every rank's guide draws all of them)\n"},
      {kLogistic + " --launch 2 --objective iwae" + out, 2,
       "vguide-host[rank 0]: error: a data-parallel fit cannot use IWAE: its log-sum-exp over particles needs every "
       "rank's likelihood before any gradient; use the ELBO (see --help)\n"},
      {"--plugin laplace --model " + kModels + "logistic_regression.qvr --data " + kModels +
           "logistic_regression.json --launch 2 --overwrite" + out,
       2,
       "vguide-host[rank 1]: error: a data-parallel fit cannot use the laplace family: its Hessian needs the whole log "
       "joint in one process (see --help)\n"},
  };
  for (const auto& c : cases) {
    HostRun r = run_host(c.args);
    EXPECT_EQ(r.exit_code, c.code) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.line), std::string::npos) << c.args << "\n" << r.output;
  }
  // Per-rank files meet the same refusal as blocks of one file.
  for (int r = 0; r < 2; ++r) fs::copy_file(kModels + "eight_schools.json", dir_ / ("schools" + std::to_string(r) + ".json"));
  HostRun per_rank = run_host("--launch 2 --plugin normal --model " + kModels + "eight_schools.qvr --data " +
                              (dir_ / "schools{rank}.json").string() + out);
  EXPECT_EQ(per_rank.exit_code, 1) << per_rank.output;
  EXPECT_NE(per_rank.output.find("vguide-host[rank 0]: error: --model " + kModels +
                                 "eight_schools.qvr: latent 'theta_raw' has one value per data row"),
            std::string::npos)
      << per_rank.output;
  HostRun env = vguide::test::run_command("RANK=x " + std::string(VGUIDE_TEST_HOST) + " " + kLogistic);
  EXPECT_EQ(env.exit_code, 2);
  EXPECT_EQ(env.output, "vguide-host: error: environment variable RANK is 'x', not a whole number (see --help)\n");
}

}  // namespace
