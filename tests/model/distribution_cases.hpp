#pragma once
// Shared by the distribution tests: one valid parameter set per family, with what
// the family should report about itself, and small tensor helpers.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <string>
#include <vector>

#include "test_util.hpp"
#include "vguide/model/distribution.hpp"

namespace vguide::model::testing {

inline at::Tensor t(double v) { return at::scalar_tensor(v, at::kDouble); }
inline at::Tensor vec(const std::vector<double>& v) { return at::tensor(v, at::kDouble); }
inline at::Tensor mat(const std::vector<std::vector<double>>& rows) {
  std::vector<at::Tensor> r;
  for (const auto& row : rows) r.push_back(vec(row));
  return at::stack(r);
}
using ::vguide::test::message_of;

inline at::Generator seeded(uint64_t seed) { return at::detail::createCPUGenerator(seed); }

struct Case {
  std::string family;
  std::vector<at::Tensor> args;
  std::string support;         // support().to_string()
  std::vector<int64_t> event;  // event_shape()
  bool discrete = false;
  bool rsample = true;
  /// Argument indices that hold integers (no derivative) and ones that are
  /// symmetric matrices (perturbed symmetrically).
  std::vector<size_t> integer_args = {};
  std::vector<size_t> symmetric_args = {};
};

inline std::vector<Case> all_cases() {
  const at::Tensor w = mat({{1.0, 0.5}, {-0.3, 0.8}, {0.2, -0.6}});
  return {
      {"Normal", {t(0.5), t(2.0)}, "real", {}},
      {"HalfNormal", {t(1.5)}, "positive", {}},
      {"LogNormal", {t(0.2), t(0.5)}, "positive", {}},
      {"LogitNormal", {t(0.3), t(0.8)}, "unit_interval", {}},
      {"TruncatedNormal", {t(0.5), t(1.5), t(-1.0), t(2.0)}, "interval(-1, 2)", {}},
      {"Cauchy", {t(1.0), t(2.0)}, "real", {}},
      {"HalfCauchy", {t(2.0)}, "positive", {}},
      {"StudentT", {t(5.0), t(1.0), t(2.0)}, "real", {}},
      {"Laplace", {t(1.0), t(2.0)}, "real", {}},
      {"Gumbel", {t(1.0), t(2.0)}, "real", {}},
      {"Exponential", {t(2.0)}, "positive", {}},
      {"Gamma", {t(3.0), t(2.0)}, "positive", {}},
      {"InverseGamma", {t(5.0), t(2.0)}, "positive", {}},
      {"Chi2", {t(4.0)}, "positive", {}},
      {"Weibull", {t(2.0), t(1.5)}, "positive", {}},
      {"Pareto", {t(1.0), t(5.0)}, "greater_than(1)", {}},
      {"GeneralizedPareto", {t(0.5), t(2.0), t(0.2)}, "greater_than(0.5)", {}},
      {"Beta", {t(2.0), t(3.0)}, "unit_interval", {}},
      {"Kumaraswamy", {t(2.0), t(3.0)}, "unit_interval", {}},
      {"Uniform", {t(-1.0), t(3.0)}, "interval(-1, 3)", {}},
      {"FisherSnedecor", {t(5.0), t(10.0)}, "positive", {}},
      {"ContinuousBernoulli", {t(0.3)}, "unit_interval", {}},
      {"Dirichlet", {vec({2.0, 3.0, 5.0})}, "simplex", {3}},
      {"MultivariateNormal", {vec({1.0, -1.0}), mat({{2.0, 0.5}, {0.5, 1.0}})}, "real", {2}, false, true, {}, {1}},
      {"LowRankMVN", {vec({1.0, 0.0, -1.0}), w, vec({0.5, 1.0, 1.5})}, "real", {3}},
      {"Wishart", {t(5.0), mat({{2.0, 0.3}, {0.3, 1.0}})}, "positive_definite", {2, 2}, false, true, {}, {1}},
      {"RelaxedBernoulli", {t(0.5), t(0.3)}, "unit_interval", {}},
      {"RelaxedOneHotCategorical", {t(0.7), vec({0.2, 0.3, 0.5})}, "simplex", {3}},
      {"Bernoulli", {t(0.3)}, "unit_interval", {}, true, false},
      {"Categorical", {vec({0.2, 0.3, 0.5})}, "interval(0, 2)", {}, true, false},
      {"Poisson", {t(3.0)}, "interval(0, inf)", {}, true, false},
      {"Binomial", {t(10.0), t(0.3)}, "interval(0, 10)", {}, true, false, {0}},
      {"NegativeBinomial", {t(4.0), t(0.4)}, "interval(0, inf)", {}, true, false},
      {"BernoulliLogit", {t(-0.5)}, "unit_interval", {}, true, false},
      {"PoissonLog", {t(1.2)}, "interval(0, inf)", {}, true, false},
      {"LKJCholesky", {t(3.0), t(2.0)}, "corr_cholesky", {3, 3}, false, false, {0}},
  };
}

}  // namespace vguide::model::testing
