#include "models.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

namespace vguide::bench {

std::string ModelSpec::name() const {
  switch (kind) {
    case ModelKind::eight_schools: return "eight_schools";
    case ModelKind::logistic: return "logistic";
    case ModelKind::normal_means: return "normal_means";
  }
  return "?";
}

std::string ModelSpec::key() const {
  switch (kind) {
    case ModelKind::eight_schools: return name();
    case ModelKind::logistic: return name() + "/N=" + std::to_string(rows) + "/P=" + std::to_string(size);
    case ModelKind::normal_means: return name() + "/N=" + std::to_string(rows) + "/K=" + std::to_string(size);
  }
  return "?";
}

namespace {

at::Tensor count(int64_t n) { return at::scalar_tensor(n, at::kLong); }

// X ~ N(0, 1) (N, P); y ~ Bernoulli(sigmoid(alpha + X beta)) with alpha = 0.5 and
// beta ~ N(0, 0.5): a posterior that concentrates, as real regressions do.
model::Data logistic_data(int64_t N, int64_t P) {
  at::Generator gen = at::detail::createCPUGenerator(20240510);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  at::Tensor X = at::randn({N, P}, gen, f64);
  at::Tensor beta = 0.5 * at::randn({P}, gen, f64);
  at::Tensor p = at::sigmoid(0.5 + at::mv(X, beta));
  at::Tensor y = at::bernoulli(p, gen).to(at::kLong);
  model::Data data("logistic_regression (generated)");
  data.set("N", count(N));
  data.set("P", count(P));
  data.set("X", X);
  data.set("y", y);
  return data;
}

// mu_k ~ N(0, 10); y[n, k] ~ N(mu_k, 2).
model::Data normal_means_data(int64_t N, int64_t K) {
  at::Generator gen = at::detail::createCPUGenerator(20240511);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  at::Tensor mu = 10.0 * at::randn({K}, gen, f64);
  at::Tensor y = mu + 2.0 * at::randn({N, K}, gen, f64);
  model::Data data("normal_means (generated)");
  data.set("K", count(K));
  data.set("y", y);
  return data;
}

}  // namespace

ModelData make_model_data(const ModelSpec& spec, const std::string& source_dir) {
  switch (spec.kind) {
    case ModelKind::eight_schools:
      return {model::load_program(source_dir + "/examples/models/eight_schools.qvr"),
              model::load_data(source_dir + "/examples/models/eight_schools.json")};
    case ModelKind::logistic:
      return {model::load_program(source_dir + "/examples/models/logistic_regression.qvr"),
              logistic_data(spec.rows, spec.size)};
    case ModelKind::normal_means:
      return {model::load_program(source_dir + "/bench/models/normal_means.qvr"),
              normal_means_data(spec.rows, spec.size)};
  }
  throw std::invalid_argument("make_model_data: unknown model kind");
}

}  // namespace vguide::bench
