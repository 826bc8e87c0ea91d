// Output components of the host runtime: Pareto-smoothed importance sampling (k̂ against
// known tail shapes and against the loo R package on the same ratios) and Stan's CSV
// layout for variational output (names, exact bytes, round trip, read by rstan).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "host_run.hpp"
#include "test_config.hpp"
#include "test_util.hpp"
#include "vguide/runtime/psis.hpp"
#include "vguide/runtime/stan_csv.hpp"

namespace {
namespace fs = std::filesystem;
using vguide::test::message_of;

constexpr double kPi = 3.14159265358979323846;
const char* const kNoRscript = "Rscript not found: run scripts/setup.sh (installs r-cran-rstan)";

// Uniform on the open interval (0, 1) from the top 53 bits of a mt19937_64 draw:
// unlike std::uniform_real_distribution it is the same on every standard library.
double uniform01(std::mt19937_64& rng) { return (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53; }

double std_normal(std::mt19937_64& rng) {  // Box-Muller
  return std::sqrt(-2.0 * std::log(uniform01(rng))) * std::cos(2.0 * kPi * uniform01(rng));
}

at::Tensor vec(const std::vector<double>& v) {
  return at::tensor(at::ArrayRef<double>(v), at::TensorOptions().dtype(at::kDouble));
}

at::Tensor vec32(const std::vector<float>& v) {
  return at::tensor(at::ArrayRef<float>(v), at::TensorOptions().dtype(at::kFloat));
}

at::Tensor vec64i(const std::vector<int64_t>& v) {
  return at::tensor(at::ArrayRef<int64_t>(v), at::TensorOptions().dtype(at::kLong));
}

std::vector<double> to_vector(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kDouble).contiguous();
  return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
}

using CommandRun = vguide::test::HostRun;
CommandRun run(const std::string& command) { return vguide::test::run_command(command); }

/// The lines of `output` that start with `prefix`, without it.
std::vector<std::string> tagged(const std::string& output, const std::string& prefix) {
  std::vector<std::string> lines;
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) lines.push_back(line.substr(prefix.size()));
  }
  return lines;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(s);
  while (std::getline(in, part, sep)) parts.push_back(part);
  if (!s.empty() && s.back() == sep) parts.emplace_back();
  return parts;
}

class TempDir {
 public:
  TempDir() : path_(fs::temp_directory_path() / ("vguide_outputs_test_" + std::to_string(::getpid()))) {
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// ---------------------------------------------------------------- PSIS

double log_sum_exp(const std::vector<double>& v) {
  double top = -std::numeric_limits<double>::infinity();
  for (double x : v) top = std::max(top, x);
  double s = 0.0;
  for (double x : v) s += std::exp(x - top);
  return top + std::log(s);
}

/// Log ratios whose ratios are generalized Pareto (location 0, scale 1, shape k), drawn
/// by the inverse CDF.
std::vector<double> gpd_log_ratios(double k, int64_t m, std::mt19937_64& rng) {
  std::vector<double> lr(static_cast<size_t>(m));
  for (double& v : lr) v = std::log(std::expm1(-k * std::log1p(-uniform01(rng))) / k);
  return lr;
}

/// Log ratios of p = N(0, sigma^2) against draws from q = N(0, 1).
std::vector<double> normal_log_ratios(double sigma, int64_t m, std::mt19937_64& rng) {
  std::vector<double> lr(static_cast<size_t>(m));
  for (double& v : lr) {
    const double z = std_normal(rng);
    v = -std::log(sigma) - 0.5 * z * z / (sigma * sigma) + 0.5 * z * z;
  }
  return lr;
}

class PsisShape : public ::testing::TestWithParam<double> {};

// Over its threshold a generalized Pareto is again generalized Pareto with the same
// shape, so k̂ estimates k from the M_tail = 300 largest of M = 10000 ratios. The
// estimator's sd is about (1 + k) / sqrt(300) (that of the maximum-likelihood estimate,
// which Zhang & Stephens's nearly attains; 0.07-0.11 here), so the mean of 40
// replicates has a standard error (1 + k) / sqrt(300 * 40) and must fall within three
// of them of k after loo's prior, (300 k + 5) / 310.
TEST_P(PsisShape, RecoversTheShapeOfGeneralizedParetoRatios) {
  const double k = GetParam();
  constexpr int64_t m = 10000;
  constexpr int replicates = 40;
  std::mt19937_64 rng(20240611);
  double sum = 0.0;
  for (int r = 0; r < replicates; ++r) {
    const vguide::PsisResult res = vguide::psis(vec(gpd_log_ratios(k, m, rng)));
    ASSERT_EQ(res.tail_length, 300);
    sum += res.khat;
  }
  const double mean = sum / replicates;
  const double expected = (300.0 * k + 5.0) / 310.0;
  const double tolerance = 3.0 * (1.0 + k) / std::sqrt(300.0 * replicates);
  EXPECT_NEAR(mean, expected, tolerance) << "k = " << k;
}

INSTANTIATE_TEST_SUITE_P(Psis, PsisShape, ::testing::Values(0.2, 0.5, 0.9));

// q = N(0, 1) for p = N(0, 4): the ratio exp(3 z^2 / 8) / 2 has P(w > t) ~ t^(-4/3)
// times a slowly varying factor, so k = 1 - 1/sigma^2 = 0.75. That factor biases k̂
// down at finite M (loo gives 0.70 on average at M = 10000), hence a margin of 0.1 on
// the mean of 40 replicates (sd of one k̂ about 0.1).
TEST(Psis, NormalProposalForAWiderNormalHasTheTheoreticalHeavyTail) {
  std::mt19937_64 rng(7);
  double sum = 0.0;
  constexpr int replicates = 40;
  for (int r = 0; r < replicates; ++r) sum += vguide::psis(vec(normal_log_ratios(2.0, 10000, rng))).khat;
  const double mean = sum / replicates;
  EXPECT_NEAR(mean, 0.75, 0.1);
  EXPECT_STRNE(vguide::khat_reading(mean), "good");
}

// p = N(0, 1/4): the ratio 2 exp(-3 z^2 / 2) is bounded by its value at z = 0, where
// P(w > w_max - e) ~ sqrt(e): a bounded tail with k = -2 (-1.92 after loo's prior).
TEST(Psis, NormalProposalForANarrowerNormalHasALightTail) {
  std::mt19937_64 rng(8);
  for (int r = 0; r < 10; ++r) {
    const double khat = vguide::psis(vec(normal_log_ratios(0.5, 10000, rng))).khat;
    EXPECT_LT(khat, -1.0);
    EXPECT_STREQ(vguide::khat_reading(khat), "good");
  }
}

TEST(Psis, ConstantRatiosGiveUniformWeights) {
  const vguide::PsisResult res = vguide::psis(at::full({100}, 3.7, at::TensorOptions().dtype(at::kFloat)));
  EXPECT_EQ(res.khat, -std::numeric_limits<double>::infinity());
  EXPECT_STREQ(vguide::khat_reading(res.khat), "good");
  EXPECT_EQ(res.tail_length, 20);  // min(ceil(0.2 * 100), ceil(3 * 10))
  ASSERT_EQ(res.log_weights.scalar_type(), at::kDouble);
  ASSERT_EQ(res.log_weights.sizes(), at::IntArrayRef({100}));
  for (double lw : to_vector(res.log_weights)) EXPECT_DOUBLE_EQ(lw, -std::log(100.0));
}

// Below the cutoff the weights are the raw ratios, normalised; the tail is replaced by
// increasing values no larger than the largest raw ratio; all weights sum to 1 and are
// monotone in the raw ratios.
TEST(Psis, WeightsAreNormalisedMonotoneAndRawBelowTheTail) {
  std::mt19937_64 rng(3);
  std::vector<double> lr(1000);
  for (double& v : lr) v = 1.5 * std_normal(rng) + 0.3 * std_normal(rng) * std_normal(rng);
  const vguide::PsisResult res = vguide::psis(vec(lr));
  const std::vector<double> lw = to_vector(res.log_weights);
  EXPECT_EQ(res.tail_length, 95);  // min(200, ceil(3 * 31.62...))
  EXPECT_NEAR(log_sum_exp(lw), 0.0, 1e-12);

  std::vector<size_t> order(lr.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return lr[a] < lr[b]; });
  for (size_t i = 1; i < order.size(); ++i) EXPECT_LE(lw[order[i - 1]], lw[order[i]]) << "rank " << i;

  const size_t first_tail = order.size() - static_cast<size_t>(res.tail_length);
  const double shift = lw[order[0]] - lr[order[0]];  // log weight - log ratio below the tail
  for (size_t i = 0; i < first_tail; ++i) EXPECT_NEAR(lw[order[i]] - lr[order[i]], shift, 1e-12) << "rank " << i;
  const double max_lr = lr[order.back()];
  int changed = 0;
  for (size_t i = first_tail; i < order.size(); ++i) {
    EXPECT_LE(lw[order[i]], max_lr + shift + 1e-12);
    if (std::abs(lw[order[i]] - lr[order[i]] - shift) > 1e-9) ++changed;
  }
  EXPECT_GT(changed, 90);  // the tail was smoothed, not left raw
}

TEST(Psis, ReadingThresholds) {
  EXPECT_STREQ(vguide::khat_reading(0.49), "good");
  EXPECT_STREQ(vguide::khat_reading(0.5), "ok");
  EXPECT_STREQ(vguide::khat_reading(0.69), "ok");
  EXPECT_STREQ(vguide::khat_reading(0.7), "bad");
  EXPECT_STREQ(vguide::khat_reading(std::numeric_limits<double>::infinity()), "bad");
  EXPECT_STREQ(vguide::khat_reading(std::numeric_limits<double>::quiet_NaN()), "bad");
}

TEST(Psis, RejectsBadInput) {
  std::vector<double> lr(50, 0.0);
  for (size_t i = 0; i < lr.size(); ++i) lr[i] = 0.01 * static_cast<double>(i);
  lr[3] = std::numeric_limits<double>::quiet_NaN();
  lr[9] = std::numeric_limits<double>::infinity();
  EXPECT_EQ(message_of<std::invalid_argument>([&] { vguide::psis(vec(lr)); }),
            "psis: 2 of 50 log ratios are not finite (NaN or infinite)");
  EXPECT_EQ(message_of<std::invalid_argument>([] { vguide::psis(at::zeros({20}, at::kDouble)); }),
            "psis: needs at least 21 draws, got 20");
  EXPECT_EQ(message_of<std::invalid_argument>([] { vguide::psis(at::zeros({5, 5}, at::kDouble)); }),
            "psis: log_ratios must be a vector of floating values, got shape [5, 5] of dtype Double");
  EXPECT_EQ(message_of<std::invalid_argument>([] { vguide::psis(at::zeros({30}, at::kLong)); }),
            "psis: log_ratios must be a vector of floating values, got shape [30] of dtype Long");
}

// The reference implementation: loo::psis (r-cran-loo, which r-cran-rstan depends on)
// on the same 1000 log ratios gives the same k̂ and the same normalised log weights.
TEST(Psis, MatchesLooOnTheSameRatios) {
  if (std::string(VGUIDE_TEST_RSCRIPT).empty()) FAIL() << kNoRscript;
  TempDir dir;
  std::mt19937_64 rng(11);
  std::vector<double> lr = normal_log_ratios(1.6, 1000, rng);
  {
    std::ofstream out(dir.path() / "lr.txt");
    char buf[32];
    for (double v : lr) {
      std::snprintf(buf, sizeof buf, "%.17g\n", v);
      out << buf;
    }
  }
  {
    std::ofstream script(dir.path() / "loo.R");
    script << "suppressMessages(library(loo))\n"
              "lr <- scan(commandArgs(trailingOnly = TRUE)[1], quiet = TRUE)\n"
              "p <- psis(lr, r_eff = 1)\n"
              "cat(sprintf('khat %.17g\\n', pareto_k_values(p)))\n"
              "cat(sprintf('lw %.17g\\n', weights(p, log = TRUE, normalize = TRUE)), sep = '')\n";
  }
  const CommandRun r = run(std::string(VGUIDE_TEST_RSCRIPT) + " " + (dir.path() / "loo.R").string() + " " +
                           (dir.path() / "lr.txt").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto khat_lines = tagged(r.output, "khat ");
  const auto lw_lines = tagged(r.output, "lw ");
  ASSERT_EQ(khat_lines.size(), 1u) << r.output;
  ASSERT_EQ(lw_lines.size(), lr.size()) << r.output;

  const vguide::PsisResult res = vguide::psis(vec(lr));
  const double loo_khat = std::strtod(khat_lines[0].c_str(), nullptr);
  EXPECT_NEAR(res.khat, loo_khat, 1e-9);
  EXPECT_GT(res.khat, 0.3);  // p is wider than q: a heavy tail (theory 1 - 1/1.6^2 = 0.61)
  const std::vector<double> lw = to_vector(res.log_weights);
  for (size_t i = 0; i < lw.size(); ++i) {
    EXPECT_NEAR(lw[i], std::strtod(lw_lines[i].c_str(), nullptr), 1e-9) << "draw " << i;
  }
}

// ---------------------------------------------------------------- Stan CSV

TEST(StanCsv, ColumnNamesFollowStansColumnMajorOrder) {
  using V = std::vector<std::string>;
  EXPECT_EQ(vguide::stan_column_names("mu", {}), V{"mu"});
  EXPECT_EQ(vguide::stan_column_names("theta", {3}), (V{"theta.1", "theta.2", "theta.3"}));
  EXPECT_EQ(vguide::stan_column_names("L", {2, 3}), (V{"L.1.1", "L.2.1", "L.1.2", "L.2.2", "L.1.3", "L.2.3"}));
  EXPECT_EQ(vguide::stan_column_names("a", {2, 2, 2}),
            (V{"a.1.1.1", "a.2.1.1", "a.1.2.1", "a.2.2.1", "a.1.1.2", "a.2.1.2", "a.1.2.2", "a.2.2.2"}));
  EXPECT_EQ(vguide::stan_column_names("x", {1, 1}), V{"x.1.1"});
  EXPECT_EQ(vguide::stan_column_names("e", {3, 0}), V{});
  const V big = vguide::stan_column_names("b", {12, 2});
  ASSERT_EQ(big.size(), 24u);
  EXPECT_EQ(big[11], "b.12.1");
  EXPECT_EQ(big[12], "b.1.2");
  EXPECT_EQ(message_of<std::invalid_argument>([] { vguide::stan_column_names("w", {2, -1}); }),
            "stan_column_names: 'w' has a negative dimension in shape [2, -1]");
}

vguide::StanCsvContent tiny_content() {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  vguide::StanCsvContent c;
  c.model_name = "tiny";
  c.settings = {{"algorithm", "normal"}, {"seed", "7"}};
  c.quantities.push_back({"mu", vec({0.25, -2.5})});
  c.quantities.push_back({"theta", vec({1e20, 1e-7, 3e20, -1e-7}).reshape({2, 2})});
  // L[draw][row][col]; draw 0 is [[1, 2], [3, 4]].
  c.quantities.push_back({"L", vec32({1.0f, 2.0f, 3.0f, 4.0f, 0.5f, static_cast<float>(std::copysign(nan, -1.0)),
                                      static_cast<float>(-inf), -0.0f})
                                   .reshape({2, 2, 2})});
  c.quantities.push_back({"count", vec64i({3, 4})});
  c.log_p = vec({-1.5, 0.1});
  c.log_g = vec32({-0.5f, 0.1f});  // a float32 0.1 prints as 0.1, not 0.10000000149011612
  return c;
}

// Hand-computed: matrices column by column; the mean row is the draws' mean in double
// (nan and -inf propagate, -0 + 4 = 4, the ints' mean is 3.5); NaN of either sign is
// "nan"; the last comment line carries no setting (rstan drops it).
TEST(StanCsv, ExactBytesOfATinyFile) {
  std::ostringstream out;
  vguide::write_stan_csv(out, tiny_content());
  EXPECT_EQ(out.str(),
            "# stan_version_major = 2\n"
            "# stan_version_minor = 32\n"
            "# stan_version_patch = 0\n"
            "# model = tiny\n"
            "# method = variational\n"
            "# output_samples = 2\n"
            "# algorithm = normal\n"
            "# seed = 7\n"
            "# first row: posterior mean; then one row per draw\n"
            "lp__,log_p__,log_g__,mu,theta.1,theta.2,L.1.1,L.2.1,L.1.2,L.2.2,count\n"
            "0,0,0,-1.125,2e+20,0,0.75,-inf,nan,2,3.5\n"
            "0,-1.5,-0.5,0.25,1e+20,1e-07,1,3,2,4,3\n"
            "0,0.1,0.1,-2.5,3e+20,-1e-07,0.5,-inf,nan,-0,4\n");
}

TEST(StanCsv, AGivenMeanReplacesTheDrawsMean) {
  vguide::StanCsvContent c = tiny_content();
  c.quantities.resize(1);
  c.quantities[0].mean = at::scalar_tensor(0.5, at::TensorOptions().dtype(at::kFloat));
  std::ostringstream out;
  vguide::write_stan_csv(out, c);
  EXPECT_NE(out.str().find("lp__,log_p__,log_g__,mu\n0,0,0,0.5\n0,-1.5,-0.5,0.25\n"), std::string::npos)
      << out.str();
}

// Every value reads back bit for bit in its own dtype (strtod for float64 columns,
// strtof for float32), and the same content gives the same bytes.
TEST(StanCsv, ValuesRoundTripExactly) {
  std::mt19937_64 rng(5);
  constexpr int64_t n = 200;
  std::vector<double> a(n * 3);
  std::vector<float> b(n * 2);
  for (double& v : a) v = std_normal(rng) * std::pow(10.0, std::floor(40.0 * uniform01(rng)) - 20.0);
  for (float& v : b) v = static_cast<float>(std_normal(rng) * std::pow(10.0, std::floor(20.0 * uniform01(rng)) - 10.0));
  a[7] = std::numeric_limits<double>::denorm_min();
  a[8] = -std::numeric_limits<double>::max();
  b[5] = std::numeric_limits<float>::denorm_min();
  b[6] = std::nextafter(1.0f, 2.0f);

  vguide::StanCsvContent c;
  c.model_name = "round_trip";
  const at::Tensor da = vec(a).reshape({n, 3});
  const at::Tensor db = vec32(b).reshape({n, 2});
  c.quantities = {{"a", da}, {"b", db}};
  c.log_p = da.select(1, 0).neg();
  c.log_g = db.select(1, 1).neg();
  std::ostringstream out;
  vguide::write_stan_csv(out, c);
  std::ostringstream again;
  vguide::write_stan_csv(again, c);
  EXPECT_EQ(out.str(), again.str());

  std::istringstream in(out.str());
  std::string line;
  while (std::getline(in, line) && line[0] == '#') {
  }
  EXPECT_EQ(line, "lp__,log_p__,log_g__,a.1,a.2,a.3,b.1,b.2");
  std::getline(in, line);  // the mean row
  int64_t row = 0;
  while (std::getline(in, line)) {
    const auto f = split(line, ',');
    ASSERT_EQ(f.size(), 8u) << line;
    EXPECT_EQ(f[0], "0");
    for (int j = 0; j < 3; ++j) {
      const double v = std::strtod(f[3 + j].c_str(), nullptr);
      EXPECT_EQ(std::memcmp(&v, &a[row * 3 + j], sizeof v), 0) << f[3 + j] << " vs " << a[row * 3 + j];
    }
    for (int j = 0; j < 2; ++j) {
      const float v = std::strtof(f[6 + j].c_str(), nullptr);
      EXPECT_EQ(std::memcmp(&v, &b[row * 2 + j], sizeof v), 0) << f[6 + j] << " vs " << b[row * 2 + j];
    }
    EXPECT_EQ(std::strtod(f[1].c_str(), nullptr), -a[row * 3]);
    EXPECT_EQ(std::strtof(f[2].c_str(), nullptr), -b[row * 2 + 1]);
    ++row;
  }
  EXPECT_EQ(row, n);
}

TEST(StanCsv, BadContentIsRefusedWithOneLine) {
  auto message = [](const vguide::StanCsvContent& c) {
    return message_of<std::invalid_argument>([&] {
      std::ostringstream out;
      vguide::write_stan_csv(out, c);
    });
  };
  auto with = [](auto edit) {
    vguide::StanCsvContent c = tiny_content();
    edit(c);
    return c;
  };
  EXPECT_EQ(message(with([](auto& c) { c.quantities[1].draws = at::zeros({3, 2}, at::kDouble); })),
            "write_stan_csv: quantity 'theta' has draws of shape [3, 2], but must have 2 draws (the size of log_p) "
            "in its first dimension");
  EXPECT_EQ(message(with([](auto& c) { c.quantities[0].name = "lp__"; })),
            "write_stan_csv: quantity 'lp__' is not a Stan variable name (a letter, then letters, digits or '_', "
            "not ending in \"__\")");
  EXPECT_EQ(message(with([](auto& c) { c.quantities[0].name = "a.b"; })),
            "write_stan_csv: quantity 'a.b' is not a Stan variable name (a letter, then letters, digits or '_', "
            "not ending in \"__\")");
  EXPECT_EQ(message(with([](auto& c) { c.quantities[2].name = "mu"; })),
            "write_stan_csv: quantity 'mu' is given twice");
  EXPECT_EQ(message(with([](auto& c) { c.quantities[0].draws = at::zeros({2, 0}, at::kDouble); })),
            "write_stan_csv: quantity 'mu' has no elements (shape [0])");
  EXPECT_EQ(message(with([](auto& c) { c.quantities[0].mean = at::zeros({2}, at::kDouble); })),
            "write_stan_csv: quantity 'mu' has a mean of shape [2], but its elements have shape []");
  EXPECT_EQ(message(with([](auto& c) {
              c.quantities[0].draws = at::zeros({2}, at::TensorOptions().dtype(at::kComplexDouble));
            })),
            "write_stan_csv: quantity 'mu' has dtype ComplexDouble, which has no Stan CSV spelling");
  EXPECT_EQ(message(with([](auto& c) { c.log_g = at::zeros({3}, at::kDouble); })),
            "write_stan_csv: log_g has 3 draws, but log_p has 2");
  EXPECT_EQ(message(with([](auto& c) {
              c.log_p = at::zeros({0}, at::kDouble);
              c.log_g = at::zeros({0}, at::kDouble);
            })),
            "write_stan_csv: no draws (log_p has size 0)");
  EXPECT_EQ(message(with([](auto& c) { c.log_p = at::zeros({2, 1}, at::kDouble); })),
            "write_stan_csv: log_p must have shape (N,), got [2, 1]");
  EXPECT_EQ(message(with([](auto& c) { c.settings.push_back({"output_samples", "5"}); })),
            "write_stan_csv: setting 'output_samples' is one of the standard keys written by the writer");
  EXPECT_EQ(message(with([](auto& c) { c.settings.push_back({"seed", "8"}); })),
            "write_stan_csv: setting 'seed' is given twice");
  EXPECT_EQ(message(with([](auto& c) { c.settings.push_back({"guide opts", "x"}); })),
            "write_stan_csv: setting key 'guide opts' must be letters, digits and '_'");
  EXPECT_EQ(message(with([](auto& c) { c.settings.push_back({"note", "two\nlines"}); })),
            "write_stan_csv: setting 'note' has a line break in its value");
  EXPECT_EQ(message(with([](auto& c) { c.model_name.clear(); })), "write_stan_csv: model_name is empty");
}

// The real client: rstan::read_stan_csv reads the file with Stan's parameter names
// (rstan's [i,j] spelling), drops the mean row, keeps every draw, and rebuilds the
// matrix L from the column-major columns (its per-element means match ours).
TEST(StanCsv, RstanReadsItWithTheRightNamesDrawsAndValues) {
  if (std::string(VGUIDE_TEST_RSCRIPT).empty()) FAIL() << kNoRscript;
  constexpr int64_t n = 50;
  std::mt19937_64 rng(99);
  auto normal = [&](std::vector<int64_t> shape, double loc) {
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    std::vector<double> v(static_cast<size_t>(count));
    for (double& x : v) x = loc + std_normal(rng);
    return vec(v).reshape(shape);
  };
  vguide::StanCsvContent c;
  c.model_name = "synthetic";
  c.settings = {{"algorithm", "normal"}, {"iter", "1000"}, {"seed", "3"}};
  const at::Tensor mu = normal({n}, 4.0);
  const at::Tensor theta = normal({n, 8}, -1.0);
  // L[i][j] centred on 10 i + j, so a transposed layout would show in the means.
  at::Tensor L = normal({n, 2, 3}, 0.0);
  for (int64_t i = 0; i < 2; ++i) {
    for (int64_t j = 0; j < 3; ++j) L.select(1, i).select(1, j).add_(static_cast<double>(10 * (i + 1) + (j + 1)));
  }
  c.quantities = {{"mu", mu}, {"theta", theta}, {"L", L.to(at::kFloat)}};
  c.log_p = normal({n}, -20.0);
  c.log_g = normal({n}, -5.0);

  TempDir dir;
  const fs::path csv = dir.path() / "synthetic_draws.csv";
  {
    std::ofstream out(csv);
    vguide::write_stan_csv(out, c);
  }
  {
    std::ofstream script(dir.path() / "read.R");
    script << "suppressMessages(library(rstan))\n"
              "fit <- withCallingHandlers(read_stan_csv(commandArgs(trailingOnly = TRUE)[1]),\n"
              "  warning = function(w) { cat('warning', conditionMessage(w), '\\n'); invokeRestart('muffleWarning') })\n"
              "cat('names', paste(fit@sim$fnames_oi, collapse = ','), '\\n')\n"
              "cat('n_save', fit@sim$n_save, '\\n')\n"
              "cat('chains', fit@sim$chains, '\\n')\n"
              "cat('model', fit@model_name, '\\n')\n"
              "e <- extract(fit)\n"
              "cat(sprintf('mu_mean %.17g\\n', mean(e$mu)))\n"
              "cat('L_dim', dim(e$L), '\\n')\n"
              "cat(sprintf('L_mean %.17g\\n', as.vector(apply(e$L, c(2, 3), mean))), sep = '')\n";
  }
  const CommandRun r =
      run(std::string(VGUIDE_TEST_RSCRIPT) + " " + (dir.path() / "read.R").string() + " " + csv.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;

  std::string names = "log_p__,log_g__,mu";
  for (int j = 1; j <= 8; ++j) names += ",theta[" + std::to_string(j) + "]";
  for (int j = 1; j <= 3; ++j) {
    for (int i = 1; i <= 2; ++i) names += ",L[" + std::to_string(i) + "," + std::to_string(j) + "]";
  }
  names += ",lp__ ";
  EXPECT_EQ(tagged(r.output, "names "), std::vector<std::string>{names}) << r.output;
  EXPECT_EQ(tagged(r.output, "n_save "), std::vector<std::string>{"50 "}) << r.output;
  EXPECT_EQ(tagged(r.output, "chains "), std::vector<std::string>{"1 "}) << r.output;
  EXPECT_EQ(tagged(r.output, "model "), std::vector<std::string>{"synthetic_draws "}) << r.output;
  EXPECT_EQ(tagged(r.output, "L_dim "), std::vector<std::string>{"50 2 3 "}) << r.output;
  // CmdStan's own variational files draw the same warning: they have no timing lines.
  EXPECT_EQ(tagged(r.output, "warning "), std::vector<std::string>{"line with \"Elapsed Time\" not found "})
      << r.output;

  const auto mu_mean = tagged(r.output, "mu_mean ");
  ASSERT_EQ(mu_mean.size(), 1u) << r.output;
  EXPECT_NEAR(std::strtod(mu_mean[0].c_str(), nullptr), mu.mean().item<double>(), 1e-12);
  const auto l_mean = tagged(r.output, "L_mean ");
  ASSERT_EQ(l_mean.size(), 6u) << r.output;
  // R reads the float32 text as a double ("10.9268999", not the float's exact binary
  // value), so its means differ from ours by float rounding only; a transposed or
  // shifted layout would differ by 1 or more.
  const at::Tensor written = L.to(at::kFloat).to(at::kDouble).mean(0);  // (2, 3)
  for (int64_t j = 0; j < 3; ++j) {
    for (int64_t i = 0; i < 2; ++i) {
      EXPECT_NEAR(std::strtod(l_mean[static_cast<size_t>(j * 2 + i)].c_str(), nullptr),
                  written[i][j].item<double>(), 1e-5)
          << "L[" << i + 1 << "," << j + 1 << "]";
    }
  }
}

}  // namespace
