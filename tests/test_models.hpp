#pragma once
// Small models written in C++ for the tests, with exact answers where they exist.
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "vguide/guide.hpp"
#include "vguide/math/normal_log_prob.hpp"
#include "vguide/model.hpp"
#include "vguide/runtime/elbo.hpp"

namespace vguide::test {

/// Adam on the negative ELBO with S particles, in phases of (steps, learning rate).
inline void fit_adam(const Model& model, Guide& guide, int64_t S, const std::vector<std::pair<int, double>>& schedule) {
  torch::optim::Adam adam(guide.parameters(), torch::optim::AdamOptions(schedule.front().second));
  for (const auto& [steps, lr] : schedule) {
    for (auto& group : adam.param_groups()) static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
    for (int i = 0; i < steps; ++i) {
      adam.zero_grad();
      auto loss = -elbo(model, guide, S);
      loss.backward();
      adam.step();
    }
  }
}

/// A model that only declares sites; log_joint is a standard-Normal-ish score of
/// every real value (enough for shape and plumbing tests).
class SitesModel : public Model {
 public:
  explicit SitesModel(std::vector<SiteInfo> sites, std::string name = "toy")
      : sites_(std::move(sites)), name_(std::move(name)) {}
  const std::vector<SiteInfo>& sites() const override { return sites_; }
  std::string name() const override { return name_; }
  at::Tensor log_joint(const at::Tensor& x, const SiteValues& values) const override {
    at::Tensor total = torch::zeros({x.size(0)}, torch::kFloat);
    for (const auto& [name, v] : values) total = total - 0.5 * v.pow(2).reshape({x.size(0), -1}).sum(1).to(torch::kFloat);
    return total;
  }

 private:
  std::vector<SiteInfo> sites_;
  std::string name_;
};

/// mu ~ Normal(m0, s0), y_i ~ Normal(mu, sigma) with sigma known: the posterior of mu
/// is Normal with the closed-form mean and sd below.
class ConjugateNormalModel : public Model {
 public:
  ConjugateNormalModel(double m0, double s0, double sigma, at::Tensor y)
      : m0_(m0), s0_(s0), sigma_(sigma), y_(std::move(y)) {
    sites_ = {{"mu", {}, constraints::real()}, {"y", {y_.size(0)}, constraints::real()}};
  }
  const std::vector<SiteInfo>& sites() const override { return sites_; }
  std::string name() const override { return "conjugate_normal"; }
  at::Tensor log_joint(const at::Tensor&, const SiteValues& v) const override {
    const at::Tensor& mu = v.at("mu");
    at::Tensor prior = math::normal_log_prob(mu, torch::full({}, m0_), torch::full({}, s0_));
    at::Tensor lik = math::normal_log_prob(y_.unsqueeze(0), mu.unsqueeze(1), torch::full({}, sigma_)).sum(1);
    return prior + lik;
  }
  double posterior_precision() const { return 1.0 / (s0_ * s0_) + y_.size(0) / (sigma_ * sigma_); }
  double posterior_mean() const {
    return (m0_ / (s0_ * s0_) + y_.sum().item<double>() / (sigma_ * sigma_)) / posterior_precision();
  }
  double posterior_sd() const { return 1.0 / std::sqrt(posterior_precision()); }
  /// log p(y) by Bayes' rule at mu = the posterior mean: log p(y, mu) - log p(mu | y),
  /// in double precision from the closed forms.
  double log_evidence() const {
    auto log_normal = [](double x, double m, double s) {
      return -0.5 * std::pow((x - m) / s, 2) - std::log(s) - 0.5 * std::log(2 * M_PI);
    };
    const double m = posterior_mean();
    double joint = log_normal(m, m0_, s0_);
    const at::Tensor y = y_.to(torch::kDouble).contiguous();
    for (int64_t i = 0; i < y.size(0); ++i) joint += log_normal(y[i].item<double>(), m, sigma_);
    return joint - log_normal(m, m, posterior_sd());
  }

 private:
  double m0_, s0_, sigma_;
  at::Tensor y_;
  std::vector<SiteInfo> sites_;
};

/// beta ~ Normal(0, tau² I), y ~ Normal(X beta, sigma²) with sigma known: the posterior
/// of beta is exactly Gaussian, N(mean, cov) with cov = (XᵀX/sigma² + I/tau²)⁻¹ and
/// mean = cov Xᵀy/sigma². Correlated columns of X make the posterior correlated.
class LinearRegressionModel : public Model {
 public:
  LinearRegressionModel(at::Tensor X, at::Tensor y, double tau, double sigma)
      : X_(std::move(X)), y_(std::move(y)), tau_(tau), sigma_(sigma) {
    sites_ = {{"beta", {X_.size(1)}, constraints::real()}, {"y", {y_.size(0)}, constraints::real()}};
  }
  const std::vector<SiteInfo>& sites() const override { return sites_; }
  std::string name() const override { return "linear_regression"; }
  at::Tensor log_joint(const at::Tensor&, const SiteValues& v) const override {
    const at::Tensor& beta = v.at("beta");  // (S, P)
    at::Tensor prior = math::normal_log_prob(beta, torch::zeros({}), torch::full({}, tau_)).sum(1);
    at::Tensor mean = torch::matmul(beta, X_.t().to(beta.scalar_type()));  // (S, N)
    at::Tensor lik = math::normal_log_prob(y_.to(beta.scalar_type()).unsqueeze(0), mean, torch::full({}, sigma_)).sum(1);
    return prior + lik;
  }
  at::Tensor precision() const {
    auto Xd = X_.to(torch::kDouble);
    return torch::matmul(Xd.t(), Xd) / (sigma_ * sigma_) + torch::eye(X_.size(1), torch::kDouble) / (tau_ * tau_);
  }
  at::Tensor posterior_cov() const { return torch::linalg_inv(precision()); }
  at::Tensor posterior_mean() const {
    return torch::matmul(posterior_cov(), torch::matmul(X_.t().to(torch::kDouble), y_.to(torch::kDouble))) /
           (sigma_ * sigma_);
  }

  /// X (N, 3) with strongly correlated columns, y from beta = (1, -2, 0.5), fixed seed.
  static LinearRegressionModel correlated(int64_t N = 40) {
    auto gen = at::detail::createCPUGenerator(31);
    at::Tensor base = at::randn({N, 1}, gen, at::kFloat);
    at::Tensor X = torch::cat({base, base + 0.3f * at::randn({N, 1}, gen, at::kFloat), at::randn({N, 1}, gen, at::kFloat)}, 1);
    at::Tensor beta = torch::tensor({1.0f, -2.0f, 0.5f});
    at::Tensor y = torch::matmul(X, beta) + 0.8f * at::randn({N}, gen, at::kFloat);
    return LinearRegressionModel(X, y, /*tau=*/3.0, /*sigma=*/0.8);
  }

 private:
  at::Tensor X_, y_;
  double tau_, sigma_;
  std::vector<SiteInfo> sites_;
};

}  // namespace vguide::test
