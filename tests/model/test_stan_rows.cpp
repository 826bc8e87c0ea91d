// The data rows of a Stan program (framework/src/model/stan/rows.hpp): which size
// counts them, that ranks' blocks weighted by the number of ranks add up to the full
// log joint (values and gradients), that a minibatch is exactly the rows it drew
// scaled up (against models built on those rows' data), that generated quantities
// keep all the rows, and the exact refusals.
#include <gtest/gtest.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "model_paths.hpp"
#include "random_point.hpp"
#include "stan_corpus.hpp"
#include "vguide/bijector.hpp"
#include "vguide/model/data.hpp"
#include "vguide/model/program_model.hpp"
#include "vguide/model/stan_model.hpp"

namespace vguide::model {
namespace {

// EXPECT_PRED2 names both strings when the prefix is missing.
bool starts_with(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

StanModel make(const std::string& program, const std::string& data) {
  return StanModel(parse_stan(program, "rows.stan"), parse_data(data, "rows.json"));
}

std::string json_array(const std::vector<double>& v) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < v.size(); ++i) s << (i ? ", " : "") << v[i];
  s << "]";
  return s.str();
}

// Hierarchical regression whose transformed data use all the rows (standardised y)
// and whose likelihood is a loop over rows of a transformed parameter.
const char* const kHierarchical = R"(data {
  int<lower=0> N;
  int<lower=1> K;
  int<lower=1> J;
  matrix[N, K] x;
  array[N] int<lower=1, upper=J> group;
  vector[N] y;
  vector<lower=0>[K] prior_scale;
}
transformed data {
  vector[N] y_std = (y - mean(y)) / sd(y);
}
parameters {
  real alpha;
  vector[K] beta;
  vector[J] a;
  real<lower=0> sigma;
  real<lower=0> tau;
}
transformed parameters {
  vector[N] mu = alpha + x * beta + a[group];
}
model {
  alpha ~ normal(0, 2);
  beta ~ normal(0, prior_scale);
  a ~ normal(0, tau);
  tau ~ exponential(1);
  sigma ~ exponential(1);
  for (n in 1:N) target += normal_lpdf(y_std[n] | mu[n], sigma);
}
)";

std::string hierarchical_data() {
  const int64_t N = 13, K = 2;
  at::Generator gen = at::detail::createCPUGenerator(3);
  const at::Tensor x = at::randn({N, K}, gen, at::kDouble), y = at::randn({N}, gen, at::kDouble) * 3 + 1;
  std::ostringstream s;
  s << "{\"N\": " << N << ", \"K\": " << K << ", \"J\": 3, \"x\": [";
  for (int64_t n = 0; n < N; ++n) {
    std::vector<double> row(x[n].data_ptr<double>(), x[n].data_ptr<double>() + K);
    s << (n ? ", " : "") << json_array(row);
  }
  s << "], \"group\": [";
  for (int64_t n = 0; n < N; ++n) s << (n ? ", " : "") << n % 3 + 1;
  s << "], \"y\": " << json_array(std::vector<double>(y.data_ptr<double>(), y.data_ptr<double>() + N))
    << ", \"prior_scale\": [1, 2.5]}";
  return s.str();
}

TEST(StanRows, TheRowsAreTheLargestLeadingDataSize) {
  const StanModel model = make(kHierarchical, hierarchical_data());
  EXPECT_EQ(model.rows_size(), "N");
  EXPECT_EQ(model.num_rows(), 13);
  EXPECT_EQ(model.rows_refusal(), "");
  EXPECT_EQ(model.batch_size(), 13);
}

// The mean over W ranks of their blocks' log joints, each weighted by W, is the full
// log joint: values and gradients, at random points.
TEST(StanRows, RanksBlocksWeightedByTheRanksAddUpToTheFullLogJoint) {
  const std::string data = hierarchical_data();
  const StanModel full = make(kHierarchical, data);
  constexpr int64_t W = 3, S = 4;
  std::vector<std::unique_ptr<StanModel>> ranks;
  for (int64_t r = 0; r < W; ++r) {
    ranks.push_back(std::make_unique<StanModel>(parse_stan(kHierarchical, "rows.stan"), parse_data(data)));
    ranks.back()->set_row_range(13 * r / W, 13 * (r + 1) / W);
    ranks.back()->set_row_weight(static_cast<double>(W));
    EXPECT_EQ(ranks.back()->num_rows(), 13 * (r + 1) / W - 13 * r / W);
  }
  const at::Tensor x = at::empty({S}, at::kDouble);
  for (uint64_t seed : {1, 2}) {
    SiteValues values = test::random_point(full, S, seed);
    std::vector<at::Tensor> leaves;
    for (auto& [name, v] : values) leaves.push_back(v.requires_grad_(true));
    const at::Tensor want = full.log_joint(x, values);
    const auto want_grads = torch::autograd::grad({want.sum()}, leaves);
    at::Tensor got = at::zeros({S}, at::kDouble);
    for (const auto& rank : ranks) got = got + rank->log_joint(x, values) / W;
    const auto got_grads = torch::autograd::grad({got.sum()}, leaves);
    EXPECT_TRUE(at::allclose(got, want, 1e-10, 1e-9)) << got << want;
    for (size_t k = 0; k < leaves.size(); ++k)
      EXPECT_TRUE(at::allclose(got_grads[k], want_grads[k], 1e-10, 1e-9)) << k;
  }
}

// A minibatch's log joint is target(no rows) + N/B (target(its rows) - target(no
// rows)), with each target from a model built on that data alone.
TEST(StanRows, AMinibatchIsTheRowsItDrewScaledUp) {
  const char* const program = R"(data {
  int<lower=0> N;
  vector[N] x;
  array[N] int<lower=0> count;
}
parameters {
  real a;
  real b;
}
model {
  a ~ normal(0, 1);
  b ~ normal(0, 1);
  count ~ poisson_log(a + b * x);
}
)";
  const std::vector<double> x = {-1.2, 0.3, 0.8, 1.5, -0.4, 2.0, 0.1, -0.9, 1.1};
  const std::vector<double> count = {0, 2, 3, 6, 1, 9, 2, 0, 4};
  const auto data = [&](const std::vector<int64_t>& rows) {
    std::vector<double> xs, cs;
    for (int64_t r : rows) {
      xs.push_back(x[static_cast<size_t>(r)]);
      cs.push_back(count[static_cast<size_t>(r)]);
    }
    return "{\"N\": " + std::to_string(rows.size()) + ", \"x\": " + json_array(xs) + ", \"count\": " + json_array(cs) +
           "}";
  };
  std::vector<int64_t> all(x.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(i);
  StanModel model = make(program, data(all));
  const StanModel none = make(program, data({}));
  constexpr int64_t N = 9, B = 4, S = 3;
  at::Generator stream = at::detail::createCPUGenerator(17);
  at::Generator replay = stream.clone();
  model.set_minibatch(B, stream);
  EXPECT_EQ(model.batch_size(), B);
  const at::Tensor at = at::empty({S}, at::kDouble);
  for (int step = 0; step < 3; ++step) {
    const SiteValues values = test::random_point(model, S, 40 + step);
    const at::Tensor rows = sample_rows(N, B, replay);
    const StanModel batch =
        make(program, data(std::vector<int64_t>(rows.data_ptr<int64_t>(), rows.data_ptr<int64_t>() + B)));
    const at::Tensor base = none.log_joint(at, values);
    const at::Tensor want = base + (static_cast<double>(N) / B) * (batch.log_joint(at, values) - base);
    EXPECT_TRUE(at::allclose(model.log_joint(at, values), want, 1e-12, 1e-10)) << "step " << step;
  }
  // B = N restores the full log joint.
  model.set_minibatch(N, stream);
  const SiteValues values = test::random_point(model, S, 9);
  EXPECT_TRUE(at::allclose(model.log_joint(at, values), make(program, data(all)).log_joint(at, values), 0, 0));
}

// A size that leads data only generated quantities read is not the rows; those
// quantities keep every row under a minibatch.
TEST(StanRows, RowsMustEnterTheLogDensityAndQuantitiesKeepThemAll) {
  const char* const program = R"(data {
  int<lower=0> N;
  vector[N] y;
  int<lower=0> N_new;
  vector[N_new] x_new;
}
parameters {
  real mu;
}
model {
  mu ~ normal(0, 5);
  y ~ normal(mu, 1);
}
generated quantities {
  vector[N_new] pred = mu + x_new;
}
)";
  StanModel model = make(program, R"({"N": 4, "y": [1, 2, 3, 4], "N_new": 6, "x_new": [1, 2, 3, 4, 5, 6]})");
  EXPECT_EQ(model.rows_size(), "N");
  EXPECT_EQ(model.num_rows(), 4);
  model.set_minibatch(2, at::detail::createCPUGenerator(1));
  at::Generator gen = at::detail::createCPUGenerator(2);
  const SiteValues values{{"mu", at::full({5}, 0.5, at::kDouble)}};
  const std::vector<StanQuantity> q = model.quantities(values, gen);
  ASSERT_EQ(q.size(), 2u);
  EXPECT_EQ(q[1].name, "pred");
  EXPECT_TRUE(at::allclose(q[1].values[0], at::arange(1, 7, at::kDouble) + 0.5));

  const StanModel only_new = make(R"(data {
  int<lower=0> N_new;
  vector[N_new] x_new;
}
parameters {
  real mu;
}
model {
  mu ~ normal(0, 5);
}
generated quantities {
  vector[N_new] pred = mu + x_new;
}
)",
                                  R"({"N_new": 3, "x_new": [1, 2, 3]})");
  EXPECT_EQ(only_new.num_rows(), 0);
  EXPECT_EQ(only_new.rows_refusal(), "the log density does not depend on the rows of N_new");
}

const std::string kCorpus = VGUIDE_TEST_STAN_DIR;

// The corpus programs whose rows can be cut, and the size that counts them.
const std::map<std::string, std::string> kCorpusRows = {
    {"categorical_softmax", "N"},
    {"cdfs", "N"},
    {"continuous_families", "N"},
    {"dirichlet_categorical", "N"},
    {"discrete_families", "N"},
    {"foreach_loops", "N"},
    {"hierarchical_linear", "N"},
    {"hierarchical_logistic", "N"},
    {"linear_regression", "N"},
    {"linear_regression_loop", "N"},
    {"logistic_bernoulli_loop", "N"},
    {"logistic_regression", "N"},
    {"lupdf_forms", "N"},
    {"matrix_regression", "N"},
    {"mixture_log_mix", "N"},
    {"mixture_simplex", "N"},
    {"mvn_lkj", "N"},
    {"ordered_logistic", "N"},
    {"poisson_glm", "N"},
    {"positive_ordered_families", "N"},
    {"transformed_data_gq", "N"},
    {"user_functions", "N"},
    {"while_loop", "N"},
};


// Over the corpus: which programs' rows can be cut (pinned), and for each of them two
// ranks' weighted blocks average to the full log joint at random points.
class CorpusRows : public ::testing::TestWithParam<std::string> {};

TEST_P(CorpusRows, RowsThatCanBeCutAddUpToTheFullLogJoint) {
  const std::string& name = GetParam();
  const auto load = [&] {
    return std::make_unique<StanModel>(load_stan(kCorpus + "/" + name + ".stan"),
                                       load_data(kCorpus + "/" + name + ".json"));
  };
  const auto full = load();
  const auto it = kCorpusRows.find(name);
  if (it == kCorpusRows.end()) {
    EXPECT_EQ(full->num_rows(), 0) << name << " can be cut over " << full->rows_size() << ": add it to kCorpusRows";
    EXPECT_FALSE(full->rows_refusal().empty());
    return;
  }
  ASSERT_EQ(full->rows_size(), it->second) << full->rows_refusal();
  const int64_t N = full->num_rows();
  auto first = load(), second = load();
  first->set_row_range(0, N / 2 + 1);
  second->set_row_range(N / 2 + 1, N);
  for (auto* rank : {first.get(), second.get()}) rank->set_row_weight(2.0);
  constexpr int64_t S = 3;
  const at::Tensor x = at::empty({S}, at::kDouble);
  const SiteValues values = test::random_point(*full, S, 5);
  const at::Tensor want = full->log_joint(x, values);
  const at::Tensor got = (first->log_joint(x, values) + second->log_joint(x, values)) / 2;
  for (int64_t p = 0; p < S; ++p) {
    const double w = want[p].item<double>(), g = got[p].item<double>();
    if (!std::isfinite(w)) EXPECT_EQ(g, w) << "particle " << p;
    else EXPECT_NEAR(g, w, 1e-9 * std::max(1.0, std::abs(w))) << "particle " << p;
  }
}

INSTANTIATE_TEST_SUITE_P(StanRows, CorpusRows, ::testing::ValuesIn(test::stan_corpus_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST(StanRows, RefusalsNameWhatStopsThem) {
  const StanModel schools = make(R"(data {
  int<lower=0> J;
  array[J] real y;
  array[J] real<lower=0> sigma;
}
parameters {
  real mu;
  real<lower=0> tau;
  vector[J] theta;
}
model {
  theta ~ normal(mu, tau);
  y ~ normal(theta, sigma);
}
)",
                                 R"({"J": 3, "y": [1, 2, 3], "sigma": [1, 1, 2]})");
  const std::string per_row =
      "the parameter 'theta' (line 9) is sized by J, and a parameter with one value per row cannot be subsampled or "
      "split (the guide draws every row of it while the log joint would see only some)";
  EXPECT_EQ(schools.rows_refusal(), per_row);
  EXPECT_EQ(schools.num_rows(), 0);
  StanModel copy = make(R"(data {
  int<lower=0> N;
  vector[N] y;
}
parameters {
  real rho;
  real<lower=0> s;
}
model {
  rho ~ normal(0, 1);
  s ~ exponential(1);
  for (n in 2:N) y[n] ~ normal(rho * y[n - 1], s);
}
)",
                        R"({"N": 6, "y": [0.5, 0.2, -0.3, 0.1, 0.9, 0.4]})");
  EXPECT_PRED2(starts_with, copy.rows_refusal(),
               "the log density is not a sum over the rows of N (at a random point, all 6 rows add ");
  try {
    copy.set_minibatch(2, at::detail::createCPUGenerator(1));
    FAIL() << "an autoregression was subsampled";
  } catch (const std::invalid_argument& e) {
    EXPECT_PRED2(starts_with, e.what(),
                 "set_minibatch: rows.stan: no data rows can be subsampled: the log density is not a sum over the "
                 "rows of N");
  }
  try {
    copy.set_row_range(0, 3);
    FAIL() << "an autoregression was split";
  } catch (const std::invalid_argument& e) {
    EXPECT_PRED2(starts_with, e.what(), "set_row_range: rows.stan: no data rows can be split: the log ");
  }
  const StanModel transposed = make(R"(data {
  int<lower=0> N;
  int<lower=0> K;
  matrix[K, N] xt;
  vector[N] y;
}
parameters {
  vector[K] beta;
}
model {
  y ~ normal(xt' * beta, 1);
}
)",
                                    R"({"N": 2, "K": 1, "xt": [[1, 2]], "y": [0.5, 1]})");
  EXPECT_EQ(transposed.rows_refusal(), "'xt' (line 4) uses N in a size that is not just its first, so its rows cannot be cut");
  // Indices into the rows, a square matrix over them, a single row.
  const char* const picked = R"(data {
  int<lower=0> N;
  int<lower=0> M;
  vector[N] y;
  array[M] int<lower=1, upper=N> pick;
}
parameters {
  real mu;
}
model {
  y[pick] ~ normal(mu, 1);
}
)";
  // The picks are rows (the density sums over them); y's N rows are not.
  const StanModel indexed = make(picked, R"({"N": 5, "M": 2, "y": [1, 2, 3, 4, 5], "pick": [1, 3]})");
  EXPECT_EQ(indexed.rows_size(), "M");
  const std::string fixed_picks = std::string(picked).replace(std::string(picked).find("array[M]"), 8, "array[2]");
  const StanModel fixed = make(fixed_picks, R"({"N": 5, "M": 2, "y": [1, 2, 3, 4, 5], "pick": [1, 3]})");
  EXPECT_EQ(fixed.rows_refusal(), "'pick' (line 5) has a bound that uses N (as row numbers would), so its rows cannot be cut");
  const StanModel covariance = make(R"(data {
  int<lower=0> N;
  vector[N] y;
  cov_matrix[N] Sigma;
}
parameters {
  real mu;
}
model {
  y ~ multi_normal(rep_vector(mu, N), Sigma);
}
)",
                                    R"({"N": 2, "y": [1, 2], "Sigma": [[1, 0], [0, 1]]})");
  EXPECT_EQ(covariance.rows_refusal(), "'Sigma' (line 4) is a cov_matrix of N rows and N columns, so its rows cannot be cut");
  const StanModel one = make("data {\n  int N;\n  vector[N] y;\n}\nparameters {\n  real mu;\n}\n"
                             "model {\n  y ~ normal(mu, 1);\n}\n",
                             R"({"N": 1, "y": [0.5]})");
  EXPECT_EQ(one.rows_refusal(), "N is 1: there are no rows to cut");
  const StanModel scalars = make("data {\n  real y;\n}\nparameters {\n  real mu;\n}\nmodel {\n  y ~ normal(mu, 1);\n}\n",
                                 R"({"y": 1.5})");
  EXPECT_EQ(scalars.rows_refusal(), "no data size is the first size of data variables, as N is in `vector[N] y`");

  StanModel good = make(kHierarchical, hierarchical_data());
  const auto message = [&](auto&& call) {
    try {
      call();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message([&] { good.set_minibatch(0, at::detail::createCPUGenerator(1)); }),
            "set_minibatch: batch size is 0, but must be in [1, 13] (N = 13 rows)");
  EXPECT_EQ(message([&] { good.set_row_range(5, 5); }),
            "set_row_range: rows [5, 5) are not a non-empty range of the 13 rows of N");
  EXPECT_EQ(message([&] { good.set_row_weight(-1); }), "set_row_weight: weight is -1.000000, but must be a positive number");
  StanModel no_rows = make("data {\n  real y;\n}\nparameters {\n  real mu;\n}\nmodel {\n  y ~ normal(mu, 1);\n}\n",
                           R"({"y": 1.5})");
  EXPECT_EQ(message([&] { no_rows.set_row_weight(2); }),
            "set_row_weight: rows.stan: no data rows can be weighted: no data size is the first size of data "
            "variables, as N is in `vector[N] y`");
  good.set_row_range(0, 6);
  EXPECT_EQ(message([&] { good.set_minibatch(7, at::detail::createCPUGenerator(1)); }),
            "set_minibatch: batch size is 7, but must be in [1, 6] (N = 6 rows)");
}

}  // namespace
}  // namespace vguide::model
