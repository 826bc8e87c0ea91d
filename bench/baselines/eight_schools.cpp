// Eight schools, non-centred, by hand:
//   mu ~ N(0, 5), tau ~ HalfCauchy(5), theta_raw[j] ~ N(0, 1),
//   y[j] ~ N(mu + tau * theta_raw[j], sigma[j]),
// with q = N(mu) N(log tau) N(theta_raw), tau = exp(log tau).
#include <ATen/CPUGeneratorImpl.h>

#include "baselines.hpp"
#include "common.hpp"

namespace vguide::bench {
namespace {

using detail::kHalfLog2Pi;
using detail::parameter;

class EightSchools final : public Baseline {
 public:
  EightSchools(const model::Data& data, int64_t S, uint64_t seed, at::ScalarType dtype)
      : dtype_(dtype),
        S_(S),
        gen_(at::detail::createCPUGenerator(seed)),
        y_(data.get("y").to(dtype)),
        sigma_(data.get("sigma").to(dtype)),
        log_sigma_(at::log(sigma_)),
        J_(y_.size(0)),
        mu_loc_(parameter({}, 0.0, dtype)),
        mu_log_scale_(parameter({}, detail::kInitLogScale, dtype)),
        tau_loc_(parameter({}, 0.0, dtype)),
        tau_log_scale_(parameter({}, detail::kInitLogScale, dtype)),
        theta_loc_(parameter({J_}, 0.0, dtype)),
        theta_log_scale_(parameter({J_}, detail::kInitLogScale, dtype)),
        adam_({mu_loc_, mu_log_scale_, tau_loc_, tau_log_scale_, theta_loc_, theta_log_scale_},
              torch::optim::AdamOptions(0.01)) {}

  std::vector<Site> sites() const override {
    return {{"mu", {}, mu_loc_, mu_log_scale_},
            {"tau", {}, tau_loc_, tau_log_scale_},
            {"theta_raw", {J_}, theta_loc_, theta_log_scale_}};
  }

  at::Tensor elbo(const std::vector<at::Tensor>& eps, const at::Tensor&) override {
    return elbo(eps.at(0), eps.at(1), eps.at(2));
  }

  void step() override {
    at::Tensor e_mu = at::randn({S_}, gen_, at::TensorOptions().dtype(dtype_));
    at::Tensor e_tau = at::randn({S_}, gen_, at::TensorOptions().dtype(dtype_));
    at::Tensor e_theta = at::randn({S_, J_}, gen_, at::TensorOptions().dtype(dtype_));
    adam_.zero_grad();
    at::Tensor loss = -elbo(e_mu, e_tau, e_theta);
    loss.backward();
    adam_.step();
  }

 private:
  at::Tensor elbo(const at::Tensor& e_mu, const at::Tensor& e_tau, const at::Tensor& e_theta) {
    // Draws: (S), (S), (S, J).
    at::Tensor mu = mu_loc_ + at::exp(mu_log_scale_) * e_mu;
    at::Tensor log_tau = tau_loc_ + at::exp(tau_log_scale_) * e_tau;
    at::Tensor tau = at::exp(log_tau);
    at::Tensor theta_raw = theta_loc_ + at::exp(theta_log_scale_) * e_theta;
    at::Tensor theta = mu.unsqueeze(1) + tau.unsqueeze(1) * theta_raw;

    // log p: the four terms of the program.
    at::Tensor lp_mu = -0.5 * at::square(mu / 5.0) - std::log(5.0) - kHalfLog2Pi;
    at::Tensor lp_tau = std::log(2.0) - std::log(M_PI) - std::log(5.0) - at::log1p(at::square(tau / 5.0));
    at::Tensor lp_theta_raw = (-0.5 * at::square(theta_raw) - kHalfLog2Pi).sum(1);
    at::Tensor lp_y = (-0.5 * at::square((y_ - theta) / sigma_) - log_sigma_ - kHalfLog2Pi).sum(1);
    at::Tensor log_joint = lp_mu + lp_tau + lp_theta_raw + lp_y;

    // log q of the constrained draw: each site's Normal, minus tau's log|d tau / d log tau|.
    at::Tensor lq_mu = -0.5 * at::square(e_mu) - kHalfLog2Pi - mu_log_scale_;
    at::Tensor lq_tau = -0.5 * at::square(e_tau) - kHalfLog2Pi - tau_log_scale_ - log_tau;
    at::Tensor lq_theta = (-0.5 * at::square(e_theta) - kHalfLog2Pi - theta_log_scale_).sum(1);
    at::Tensor log_q = lq_mu + lq_tau + lq_theta;
    return (log_joint - log_q).mean();
  }

  at::ScalarType dtype_;  // the parameters, data and noise
  int64_t S_;
  at::Generator gen_;
  at::Tensor y_, sigma_, log_sigma_;
  int64_t J_;
  at::Tensor mu_loc_, mu_log_scale_, tau_loc_, tau_log_scale_, theta_loc_, theta_log_scale_;
  torch::optim::Adam adam_;
};

}  // namespace

std::unique_ptr<Baseline> make_eight_schools_baseline(const model::Data& data, int64_t S, uint64_t seed, at::ScalarType dtype) {
  return std::make_unique<EightSchools>(data, S, seed, dtype);
}

}  // namespace vguide::bench
