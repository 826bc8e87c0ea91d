// vguide-host with a Stan program: the fit against the exact conjugate posterior,
// Stan's names and order in draws.csv (read by rstan), and the refusals.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "host_run.hpp"

namespace {
namespace fs = std::filesystem;
using vguide::test::HostRun;

// A normal mean with known sd 2 and a normal(1, 3) prior: the posterior is normal
// with precision 1/9 + N/4. The transformed parameter and the generated quantities
// (a matrix, for column-major names) are functions of mu.
const char* const kProgram = R"(// conjugate normal mean
data {
  int<lower=1> N;
  vector[N] y;
}
parameters {
  real mu;
}
transformed parameters {
  real mu2 = 2 * mu;
}
model {
  mu ~ normal(1, 3);
  y ~ normal(mu, 2);
}
generated quantities {
  matrix[2, 3] m;
  for (i in 1:2)
    for (j in 1:3) m[i, j] = 10 * i + j + mu;
  int flag = mu > 0;
}
)";
const std::vector<double> kY = {2.1, 3.4, 1.2, 4.4, 2.9, 3.3, 2.2, 1.8, 3.9, 2.6};

class HostStan : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("vguide_host_stan_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    std::ofstream(dir_ / "normal_mean.stan") << kProgram;
    std::ostringstream data;
    data << "{\"N\": " << kY.size() << ", \"y\": [";
    for (size_t i = 0; i < kY.size(); ++i) data << (i ? ", " : "") << kY[i];
    data << "]}";
    std::ofstream(dir_ / "normal_mean.json") << data.str();
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string model_args() const {
    return "--model " + (dir_ / "normal_mean.stan").string() + " --data " + (dir_ / "normal_mean.json").string();
  }
  fs::path dir_;
};

std::string first_line_of(const fs::path& csv) {
  std::ifstream in(csv);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty() && line[0] != '#') return line;
  return "";
}

}  // namespace

TEST_F(HostStan, FitsTheExactConjugatePosteriorAtTheDefaults) {
  const HostRun r =
      vguide::test::run_host("--plugin normal " + model_args() + " --quiet --output " + (dir_ / "out").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream in(dir_ / "out" / "summary.json");
  const auto summary = nlohmann::json::parse(in);
  double sum = 0;
  for (double y : kY) sum += y;
  const double precision = 1.0 / 9 + kY.size() / 4.0;
  const double mean = (1.0 / 9 + sum / 4.0) / precision, sd = 1 / std::sqrt(precision);
  const auto& mu = summary["sites"]["mu"];
  EXPECT_NEAR(mu["mean"].get<double>(), mean, 0.1 * sd);
  EXPECT_NEAR(mu["sd"].get<double>(), sd, 0.1 * sd);
  EXPECT_EQ(summary["model"], "normal_mean");
  // Transformed parameters and generated quantities are computed from each draw.
  EXPECT_EQ(summary["sites"]["mu2"]["derived"], true);
  EXPECT_NEAR(summary["sites"]["mu2"]["mean"].get<double>(), 2 * mu["mean"].get<double>(), 1e-9);
  const auto& m = summary["sites"]["m"]["mean"];
  ASSERT_EQ(m.size(), 2u);
  EXPECT_NEAR(m[1][2].get<double>(), 23 + mu["mean"].get<double>(), 1e-9);
  // Stan's order and names: parameters, transformed parameters, generated quantities;
  // matrices column-major.
  EXPECT_EQ(first_line_of(dir_ / "out" / "draws.csv"),
            "lp__,log_p__,log_g__,mu,mu2,m.1.1,m.2.1,m.1.2,m.2.2,m.1.3,m.2.3,flag");
}

TEST_F(HostStan, RstanReadsTheDrawsWithStansOwnNames) {
  ASSERT_EQ(vguide::test::run_host("--plugin normal " + model_args() + " --steps 100 --draws 30 --quiet --output " +
                                   dir_.string())
                .exit_code,
            0);
  const std::string script = "fit <- suppressMessages(rstan::read_stan_csv('" + (dir_ / "draws.csv").string() +
                             "')); m <- as.matrix(fit); cat(nrow(m), colnames(m), sep = ' ')";
  const HostRun r = vguide::test::run_command("Rscript -e \"" + script + "\"");
  ASSERT_EQ(r.exit_code, 0) << "Rscript with rstan is needed (scripts/setup.sh installs r-cran-rstan): " << r.output;
  const std::string& out = r.output;
  // The names rstan shows for Stan's own draws of this program, then lp__.
  EXPECT_EQ(out.substr(out.find_last_of('\n') + 1),
            "30 log_p__ log_g__ mu mu2 m[1,1] m[2,1] m[1,2] m[2,2] m[1,3] m[2,3] flag lp__")
      << out;
}

// The compiled and the interpreted log joint give the same fit to rounding.
TEST_F(HostStan, CompiledAndInterpretedFitsAgree) {
  std::map<std::string, double> means;
  for (const std::string evaluator : {"compiled", "interpreted"}) {
    const fs::path out = dir_ / evaluator;
    const HostRun r = vguide::test::run_host("--plugin normal " + model_args() + " --stan-evaluator " + evaluator +
                                             " --steps 300 --seed 3 --quiet --output " + out.string());
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::ifstream in(out / "summary.json");
    means[evaluator] = nlohmann::json::parse(in)["sites"]["mu"]["mean"].get<double>();
  }
  EXPECT_NEAR(means["compiled"], means["interpreted"], 1e-9);
}

double summary_mean(const fs::path& out, const std::string& site) {
  std::ifstream in(out / "summary.json");
  return nlohmann::json::parse(in)["sites"][site]["mean"].get<double>();
}

// Minibatches of the rows of N reach the exact posterior; two ranks, each over its
// block of rows, fit what one process fits.
TEST_F(HostStan, MinibatchesAndRanksFitTheRows) {
  double precision = 1.0 / 9.0, shift = 1.0 / 9.0;
  for (double y : kY) {
    precision += 0.25;
    shift += y / 4.0;
  }
  const double mean = shift / precision, sd = 1.0 / std::sqrt(precision);
  HostRun r = vguide::test::run_host("--plugin normal " + model_args() + " --batch-size 4 --seed 5 --quiet --output " +
                                     (dir_ / "batch").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NEAR(summary_mean(dir_ / "batch", "mu"), mean, 0.25 * sd);

  const std::string fit = "--plugin normal " + model_args() + " --steps 200 --seed 2 --draws 50 --quiet --output ";
  r = vguide::test::run_host(fit + (dir_ / "one").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = vguide::test::run_host("--launch 2 " + fit + (dir_ / "two").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NEAR(summary_mean(dir_ / "two", "mu"), summary_mean(dir_ / "one", "mu"), 1e-5);
  EXPECT_NEAR(summary_mean(dir_ / "two", "mu2"), summary_mean(dir_ / "one", "mu2"), 2e-5);
}

// A minibatch fit steps directly (the batch's tape takes the rows as inputs), or says
// why not; forced, a batch the tape cannot hold is a one-line error.
TEST_F(HostStan, MinibatchesStepDirectlyOrSayWhy) {
  const std::string fit = "--plugin normal " + model_args() + " --batch-size 4 --steps 50 --draws 20 --seed 5 ";
  HostRun r = vguide::test::run_host(fit + "--log-level debug --output " + (dir_ / "auto").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("steps: direct"), std::string::npos) << r.output;
  r = vguide::test::run_host(fit + "--step autograd --quiet --output " + (dir_ / "autograd").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The same rows and the same draws: the same fit to rounding.
  EXPECT_NEAR(summary_mean(dir_ / "auto", "mu"), summary_mean(dir_ / "autograd", "mu"), 1e-9);

  std::ofstream(dir_ / "split.stan") << "data {\n  int<lower=1> N;\n  vector[N] y;\n}\n"
                                        "parameters {\n  real mu;\n}\nmodel {\n  mu ~ normal(1, 3);\n"
                                        "  for (n in 1:N)\n    if (y[n] > 2)\n      y[n] ~ normal(mu, 2);\n"
                                        "    else\n      y[n] ~ normal(mu, 3);\n}\n";
  const std::string split = "--plugin normal --model " + (dir_ / "split.stan").string() + " --data " +
                            (dir_ / "normal_mean.json").string() + " --batch-size 4 --steps 20 --draws 10 ";
  r = vguide::test::run_host(split + "--log-level debug --output " + (dir_ / "split").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("steps: autograd: the model's log joint is not compiled for these rows (a minibatch of 4 "
                          "rows is not compiled: the operator '>' on values that depend on parameters or on the rows "
                          "(line 11))"),
            std::string::npos)
      << r.output;
  r = vguide::test::run_host(split + "--step direct --quiet --output " + (dir_ / "forced").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output,
            "vguide-host: error: the direct step does not apply: the model's log joint is not compiled for these rows "
            "(a minibatch of 4 rows is not compiled: the operator '>' on values that depend on parameters or on the "
            "rows (line 11))\n");
  EXPECT_FALSE(fs::exists(dir_ / "forced" / "summary.json"));
}

TEST_F(HostStan, RefusalsAreOneLineWithTheirExitCode) {
  // Eight schools' theta has one value per school: its rows cannot be cut.
  std::ofstream(dir_ / "schools.stan") << "data {\n  int<lower=0> J;\n  array[J] real y;\n}\n"
                                          "parameters {\n  vector[J] theta;\n}\n"
                                          "model {\n  theta ~ normal(0, 5);\n  y ~ normal(theta, 1);\n}\n";
  std::ofstream(dir_ / "schools.json") << R"({"J": 3, "y": [1, 2, 3]})";
  const std::string schools =
      "--plugin normal --model " + (dir_ / "schools.stan").string() + " --data " + (dir_ / "schools.json").string();
  HostRun r = vguide::test::run_host(schools + " --batch-size 2 --output " + (dir_ / "refused").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "vguide-host: error: set_minibatch: " + (dir_ / "schools.stan").string() +
                          ": no data rows can be subsampled: the parameter 'theta' (line 6) is sized by J, and a "
                          "parameter with one value per row cannot be subsampled or split (the guide draws every row "
                          "of it while the log joint would see only some)\n");
  r = vguide::test::run_host(schools + " --world-size 2 --rank 0 --output " + (dir_ / "refused").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "vguide-host[rank 0]: error: --model " + (dir_ / "schools.stan").string() +
                          ": no data rows can be split: the parameter 'theta' (line 6) is sized by J, and a parameter "
                          "with one value per row cannot be subsampled or split (the guide draws every row of it "
                          "while the log joint would see only some)\n");
  fs::copy_file(dir_ / "normal_mean.json", dir_ / "normal_mean1.json");
  r = vguide::test::run_host("--plugin normal --model " + (dir_ / "normal_mean.stan").string() + " --data " +
                             (dir_ / "normal_mean{rank}.json").string() + " --world-size 2 --rank 1 --output " +
                             (dir_ / "refused").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "vguide-host[rank 1]: error: --data " + (dir_ / "normal_mean{rank}.json").string() +
                          ": one data file per rank ({rank}) is not supported for Stan programs; every rank reads all "
                          "the data and fits its own block of rows (docs/stan.md)\n");
  r = vguide::test::run_host("--plugin normal " + model_args() + " --language julia");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output, "vguide-host: error: --language julia: must be qvr or stan (see --help)\n");
  r = vguide::test::run_host("--plugin normal " + model_args() + " --stan-evaluator fast");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output,
            "vguide-host: error: --stan-evaluator fast: must be auto, compiled or interpreted (see --help)\n");
  std::ofstream(dir_ / "bad.stan") << "parameters {\n  real mu\n}\n";
  r = vguide::test::run_host("--plugin normal --model " + (dir_ / "bad.stan").string() + " --data " +
                             (dir_ / "normal_mean.json").string() + " --output " + (dir_ / "out").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "vguide-host: error: " + (dir_ / "bad.stan").string() + ":3:1: expected ';', found '}'\n");
  // --language stan reads a file of any name as Stan.
  fs::copy_file(dir_ / "normal_mean.stan", dir_ / "program.txt");
  r = vguide::test::run_host("--plugin normal --language stan --model " + (dir_ / "program.txt").string() +
                             " --data " + (dir_ / "normal_mean.json").string() + " --steps 50 --quiet --output " +
                             (dir_ / "txt").string());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(dir_ / "txt" / "summary.json"));
}
