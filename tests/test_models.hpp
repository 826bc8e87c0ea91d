#pragma once
// Small models written in C++ for the tests, with exact answers where they exist.
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "vguide/math/normal_log_prob.hpp"
#include "vguide/model.hpp"

namespace vguide::test {

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

 private:
  double m0_, s0_, sigma_;
  at::Tensor y_;
  std::vector<SiteInfo> sites_;
};

}  // namespace vguide::test
