// vguide-host end to end: a fit that writes summary.json, and each kind of bad input
// giving one line on stderr and the documented exit code.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "test_config.hpp"

namespace {
namespace fs = std::filesystem;

struct HostRun {
  int exit_code;
  std::string output;  // stdout and stderr
};

HostRun host(const std::string& args) {
  const std::string command = std::string(VGUIDE_TEST_HOST) + " " + args + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::string out;
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) out.append(buffer, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

const std::string kModels = std::string(VGUIDE_TEST_SOURCE_DIR) + "/examples/models/";
const std::string kEightSchools =
    "--model " + kModels + "eight_schools.qvr --data " + kModels + "eight_schools.json";

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
  EXPECT_TRUE(std::isfinite(summary["final_elbo"].get<double>()));
  EXPECT_EQ(summary["sites"]["theta_raw"]["mean"].size(), 8u);
  const double mu = summary["sites"]["mu"]["mean"].get<double>();
  EXPECT_GT(mu, -5.0);  // the data's pooled mean is about 8, the prior's 0
  EXPECT_LT(mu, 15.0);
  EXPECT_GT(summary["sites"]["tau"]["mean"].get<double>(), 0.0);
  EXPECT_FALSE(fs::exists(dir_ / "summary.json.tmp"));
}

TEST_F(HostTest, SameSeedSameSummary) {
  const std::string args = "--plugin normal " + kEightSchools + " --steps 50 --draws 100 --seed 7 --output ";
  fs::create_directories(dir_ / "a");
  fs::create_directories(dir_ / "b");
  ASSERT_EQ(host(args + (dir_ / "a").string()).exit_code, 0);
  ASSERT_EQ(host(args + (dir_ / "b").string()).exit_code, 0);
  auto read = [](const fs::path& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  EXPECT_EQ(read(dir_ / "a" / "summary.json"), read(dir_ / "b" / "summary.json"));
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
  EXPECT_EQ(r.output, "vguide-host: error: --steps is -1, but must be at least 0 (see --help)\n");
  r = host("--plugin normal --plugin delta " + kEightSchools);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output, "vguide-host: error: several families are loaded: choose one with --guide (see --help)\n");
}

TEST_F(HostTest, BadInputIsExitOneWithOneLineAndNothingOverwritten) {
  std::ofstream(dir_ / "summary.json") << "the user's earlier summary\n";
  HostRun r = host("--plugin /nonexistent/libx.so " + kEightSchools + " --output " + dir_.string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "vguide-host: error: plugin /nonexistent/libx.so: no such file\n");
  r = host("--plugin normal " + kEightSchools + " --guide-opt init_scale=0 --output " + dir_.string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output,
            "vguide-host: error: normal: bad value for option 'init_scale': 0 is out of range (must be >0); valid "
            "options: init_scale=0.1\n");
  const fs::path bad_data = dir_ / "bad.json";
  std::ofstream(bad_data) << "{\"J\": 8, \"y\": [1, 2], \"sigma\": [1, 1, 1, 1, 1, 1, 1, 1]}";
  r = host("--plugin normal --model " + kModels + "eight_schools.qvr --data " + bad_data.string() + " --output " +
           dir_.string());
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
  r = host("--plugin normal " + kEightSchools + " --batch-size 4 --output " + dir_.string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output.rfind("vguide-host: error: ", 0), 0u) << r.output;
  EXPECT_NE(r.output.find("theta_raw"), std::string::npos) << r.output;  // the per-row latent is named
}

const char* const kShipped[] = {"delta", "iaf", "laplace", "lowrank_mvn", "mixture", "mvn", "normal", "spline"};

TEST_F(HostTest, ListPluginsWithoutPluginListsEveryShippedFamily) {
  HostRun r = host("--list-plugins");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 8) << r.output;
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
  EXPECT_NE(r.output.find("vguide-host: skipped plugin " + bad.string() +
                          ": ABI version 2.0 is incompatible with this host's 1.0 (major versions differ; rebuild "
                          "the plugin against this SDK)\n"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 9) << r.output;  // the skip + 8 families
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
