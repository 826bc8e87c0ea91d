// The compiled Stan log joint (framework/src/model/stan/trace.hpp) against the
// interpreter: for every program of the Stan corpus that compiles, the same log joint
// and the same gradients at random points of the support, S = 1 and 7, float64 and
// float32; which programs compile and, for some that do not, the exact reason; and
// programs written here for the paths the corpus does not reach (a vectorised loop
// that falls back part-way, element-by-element writes, densities inside
// expressions, offset/multiplier with a parameter).
#include <gtest/gtest.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "model_paths.hpp"
#include "random_point.hpp"
#include "stan_corpus.hpp"
#include "vguide/bijector.hpp"
#include "vguide/model/data.hpp"
#include "vguide/model/stan_model.hpp"

namespace vguide::model {
namespace {

const std::string kDir = VGUIDE_TEST_STAN_DIR;

// The corpus programs whose log joint the tape expresses.
const std::set<std::string> kCompiled = {
    "ar1",          "ar5",          "eight_schools_centered", "eight_schools_noncentered", "foreach_loops",
    "hierarchical_linear", "hierarchical_logistic", "indexing", "linear_regression", "linear_regression_loop",
    "logistic_regression", "lupdf_forms", "offset_multiplier_bounds", "old_syntax", "poisson_glm",
    "reshape",      "shapes",       "transformed_data_gq",    "user_functions",            "while_loop",
};

// log_joint and log_joint_interpreted agree at random points, values and gradients.
void expect_same_as_interpreted(const StanModel& model, const std::string& what) {
  ASSERT_TRUE(model.compiled()) << what << ": " << model.interpreted_because();
  uint64_t seed = 11;
  for (at::ScalarType dtype : {at::kDouble, at::kFloat}) {
    const double tol = dtype == at::kDouble ? 1e-9 : 2e-4;
    for (int64_t S : {int64_t{1}, int64_t{7}}) {
      SCOPED_TRACE(what + ", S = " + std::to_string(S) + (dtype == at::kDouble ? ", float64" : ", float32"));
      const SiteValues base = test::random_point(model, S, seed++, dtype);
      SiteValues a, b;
      std::vector<at::Tensor> la, lb;
      for (const auto& [name, v] : base) {
        a[name] = v.clone().requires_grad_(true);
        b[name] = v.clone().requires_grad_(true);
        la.push_back(a[name]);
        lb.push_back(b[name]);
      }
      const at::Tensor x = at::empty({S}, dtype);
      const at::Tensor got = model.log_joint(x, a), want = model.log_joint_interpreted(x, b);
      ASSERT_EQ(got.sizes(), want.sizes());
      ASSERT_EQ(got.scalar_type(), dtype);
      for (int64_t p = 0; p < S; ++p) {
        const double g = got[p].item<double>(), w = want[p].item<double>();
        if (!std::isfinite(w)) {
          EXPECT_FALSE(std::isfinite(g)) << "particle " << p;
          continue;
        }
        EXPECT_NEAR(g, w, tol * std::max(1.0, std::abs(w))) << "particle " << p;
      }
      if (!at::isfinite(want).all().item<bool>()) continue;
      const auto ga = torch::autograd::grad({got.sum()}, la, {}, false, false, true);
      const auto gb = torch::autograd::grad({want.sum()}, lb, {}, false, false, true);
      for (size_t k = 0; k < la.size(); ++k) {
        const at::Tensor want_g = gb[k].defined() ? gb[k] : at::zeros_like(lb[k]);
        ASSERT_TRUE(ga[k].defined() || !want_g.ne(0).any().item<bool>()) << "no gradient for latent " << k;
        const at::Tensor got_g = ga[k].defined() ? ga[k] : at::zeros_like(la[k]);
        const double err = (got_g - want_g).abs().max().item<double>();
        EXPECT_LE(err, tol * std::max(1.0, want_g.abs().max().item<double>())) << "gradient of latent " << k;
      }
    }
  }
}


StanModel corpus_model(const std::string& name, StanOptions options = {StanEvaluator::compiled}) {
  return StanModel(load_stan(kDir + "/" + name + ".stan"), load_data(kDir + "/" + name + ".json"), 0, options);
}

class CompiledCorpus : public ::testing::TestWithParam<std::string> {};

TEST_P(CompiledCorpus, CompilesWhereTheTapeCanAndAgreesWithTheInterpreter) {
  const std::string& name = GetParam();
  const StanModel model = corpus_model(name);
  if (!kCompiled.count(name)) {
    EXPECT_FALSE(model.compiled()) << name << " compiles now: add it to kCompiled";
    EXPECT_FALSE(model.interpreted_because().empty()) << name;
    return;
  }
  expect_same_as_interpreted(model, name);
}

INSTANTIATE_TEST_SUITE_P(StanCompile, CompiledCorpus, ::testing::ValuesIn(test::stan_corpus_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST(StanCompile, SaysWhyAProgramStaysInterpreted) {
  EXPECT_EQ(corpus_model("parameter_branching").interpreted_because(),
            "the operator '>' on values that depend on parameters (line 9)");
  EXPECT_EQ(corpus_model("vector_math").interpreted_because().rfind("the function 'cumulative_sum' of values", 0), 0u)
      << corpus_model("vector_math").interpreted_because();
  EXPECT_EQ(corpus_model("ar5", StanOptions{StanEvaluator::interpreted}).interpreted_because(),
            "the evaluator is StanEvaluator::interpreted");
  EXPECT_FALSE(corpus_model("ar5", StanOptions{StanEvaluator::interpreted}).compiled());
}

// The automatic evaluator takes the tape for small steps and the interpreter's
// vectorised kernels when S times the tape's elements outgrows its node count.
TEST(StanCompile, AutomaticChoosesByStepSize) {
  const StanModel model = corpus_model("ar5", StanOptions{});
  ASSERT_TRUE(model.compiled());
  const auto node_at = [&](int64_t S) {
    SiteValues values = test::random_point(model, S, 5);
    for (auto& [name, v] : values) v.requires_grad_(true);
    const at::Tensor lj = model.log_joint(at::empty({S}, at::kDouble), values);
    return std::string(lj.grad_fn() ? lj.grad_fn()->name() : "(none)");
  };
  EXPECT_EQ(node_at(1), "FusedLogJointBackward");
  EXPECT_NE(node_at(4000), "FusedLogJointBackward");
}

StanModel program(const std::string& text, const std::string& json) {
  const std::string path = ::testing::TempDir() + "/compile_data.json";
  {
    std::ofstream out(path);
    out << json;
  }
  return StanModel(parse_stan(text, "t.stan"), load_data(path), 0, StanOptions{StanEvaluator::compiled});
}

TEST(StanCompile, ElementWritesConditionsOnDataAndLoopsThatFallBack) {
  // mu is filled element by element (one gather); two loops that could run at once
  // fall back to one iteration at a time after recording part of their body (the
  // tape must forget that part): one has an if on data that differs by iteration,
  // the other declares a vector whose size does.
  const std::string text = R"(
data { int N; vector[N] y; array[N] int g; }
parameters { real a; real<lower=0> s; vector[2] b; }
model {
  vector[N] mu;
  for (n in 1:N) {
    if (g[n] == 1) mu[n] = a + b[1] * n;
    else mu[n] = a - b[2];
  }
  y ~ normal(mu, s);
  for (n in 1:N) {  // run at once, the if differs by iteration: one at a time instead
    if (g[n] == 1) y[n] ~ normal(a, s);
    else y[n] ~ normal(b[1], 2 * s);
  }
  for (n in 1:N) {
    real scaled = b[1] * y[n];
    vector[n] w = rep_vector(scaled, n);
    target += normal_lpdf(sum(w) | 0, 10) + 0.5 * std_normal_lpdf(b[2]);
  }
  target += -square(s) + log1m_inv_logit(a) + dot_self(b);
  s ~ exponential(1);
}
)";
  const StanModel model = program(text, R"({"N": 5, "y": [0.5, -1.2, 2.0, 0.1, 0.7], "g": [1, 2, 1, 1, 2]})");
  expect_same_as_interpreted(model, "element writes");
}

// A draw whose transformed parameter is NaN is rejected on the tape as the
// interpreter rejects it, even where the model does not use that parameter.
TEST(StanCompile, AnUndefinedTransformedParameterRejectsTheDraw) {
  const StanModel model = program(R"(
parameters { real x; }
transformed parameters { real r = log(x + 1.9); }
model { x ~ normal(0, 1); }
)",
                                  "{}");
  ASSERT_TRUE(model.compiled()) << model.interpreted_because();
  const at::Tensor x = at::tensor({-1.95, 0.5}, at::kDouble).requires_grad_(true);
  const at::Tensor lj = model.log_joint(at::empty({2}, at::kDouble), {{"x", x}});
  EXPECT_EQ(lj[0].item<double>(), -INFINITY);
  EXPECT_NEAR(lj[1].item<double>(), -0.125 - 0.5 * std::log(2 * M_PI), 1e-12);
  // Seeded with 1 for both particles: the rejected one has no gradient.
  const at::Tensor g = torch::autograd::grad({lj}, {x}, {at::ones_like(lj)})[0];
  EXPECT_EQ(g[0].item<double>(), 0.0);
  EXPECT_NEAR(g[1].item<double>(), -0.5, 1e-12);
  const at::Tensor want = model.log_joint_interpreted(at::empty({2}, at::kDouble), {{"x", x.detach()}});
  EXPECT_EQ(want[0].item<double>(), -INFINITY);
}

TEST(StanCompile, MultiplierThatIsAParameterAndMatrixProducts) {
  const std::string text = R"(
data { int N; int K; matrix[N, K] X; vector[N] y; }
parameters { real<lower=0> tau; vector<offset=1, multiplier=tau>[K] beta; real<lower=0> sigma; }
model {
  matrix[K, K] outer = beta * beta';
  row_vector[K] r = beta' * outer;
  tau ~ cauchy(0, 2.5);
  beta ~ normal(1, tau);
  sigma ~ student_t(3, 0, 1);
  y ~ normal(X * beta, sigma);
  target += -0.01 * sum(r) + mean(X' * (y - X * beta));
}
)";
  const StanModel model = program(
      text, R"({"N": 4, "K": 2, "X": [[1, 0.5], [1, -0.3], [1, 2.0], [1, 1.1]], "y": [1.0, 0.2, 3.1, 2.0]})");
  expect_same_as_interpreted(model, "multiplier and products");
}

}  // namespace
}  // namespace vguide::model
