// Logistic regression by hand:
//   alpha ~ N(0, 5), beta[p] ~ N(0, 2.5), y[n] ~ BernoulliLogit(alpha + X[n] . beta),
// with q = N(alpha) N(beta); a minibatch of B rows (drawn with replacement, the
// cheapest unbiased choice) scales the likelihood by N/B.
#include <ATen/CPUGeneratorImpl.h>

#include "baselines.hpp"
#include "common.hpp"

namespace vguide::bench {
namespace {

using detail::kHalfLog2Pi;
using detail::parameter;

class LogisticRegression final : public Baseline {
 public:
  LogisticRegression(const model::Data& data, int64_t S, int64_t B, uint64_t seed, at::ScalarType dtype)
      : dtype_(dtype),
        S_(S),
        gen_(at::detail::createCPUGenerator(seed)),
        X_(data.get("X").to(dtype)),
        y_(data.get("y").to(dtype)),
        N_(X_.size(0)),
        P_(X_.size(1)),
        B_(B == 0 ? N_ : B),
        alpha_loc_(parameter({}, 0.0, dtype)),
        alpha_log_scale_(parameter({}, detail::kInitLogScale, dtype)),
        beta_loc_(parameter({P_}, 0.0, dtype)),
        beta_log_scale_(parameter({P_}, detail::kInitLogScale, dtype)),
        adam_({alpha_loc_, alpha_log_scale_, beta_loc_, beta_log_scale_}, torch::optim::AdamOptions(0.01)) {
    if (B_ < 1 || B_ > N_)
      throw std::invalid_argument("logistic baseline: batch size is " + std::to_string(B) + ", but must be in [1, " +
                                  std::to_string(N_) + "]");
  }

  std::vector<Site> sites() const override {
    return {{"alpha", {}, alpha_loc_, alpha_log_scale_}, {"beta", {P_}, beta_loc_, beta_log_scale_}};
  }

  at::Tensor elbo(const std::vector<at::Tensor>& eps, const at::Tensor& rows) override {
    return elbo(eps.at(0), eps.at(1), rows);
  }

  void step() override {
    at::Tensor e_alpha = at::randn({S_}, gen_, at::TensorOptions().dtype(dtype_));
    at::Tensor e_beta = at::randn({S_, P_}, gen_, at::TensorOptions().dtype(dtype_));
    at::Tensor rows;
    if (B_ < N_) rows = at::randint(N_, {B_}, gen_, at::kLong);
    adam_.zero_grad();
    at::Tensor loss = -elbo(e_alpha, e_beta, rows);
    loss.backward();
    adam_.step();
  }

 private:
  at::Tensor elbo(const at::Tensor& e_alpha, const at::Tensor& e_beta, const at::Tensor& rows) {
    at::Tensor alpha = alpha_loc_ + at::exp(alpha_log_scale_) * e_alpha;  // (S)
    at::Tensor beta = beta_loc_ + at::exp(beta_log_scale_) * e_beta;      // (S, P)

    at::Tensor X = rows.defined() ? X_.index_select(0, rows) : X_;
    at::Tensor y = rows.defined() ? y_.index_select(0, rows) : y_;
    at::Tensor eta = alpha.unsqueeze(1) + at::matmul(beta, X.t());  // (S, B)
    at::Tensor lp_y = (y * eta - at::softplus(eta)).sum(1);
    if (rows.defined()) lp_y = lp_y * (static_cast<double>(N_) / static_cast<double>(rows.size(0)));
    at::Tensor lp_alpha = -0.5 * at::square(alpha / 5.0) - std::log(5.0) - kHalfLog2Pi;
    at::Tensor lp_beta = (-0.5 * at::square(beta / 2.5) - std::log(2.5) - kHalfLog2Pi).sum(1);
    at::Tensor log_joint = lp_alpha + lp_beta + lp_y;

    at::Tensor lq_alpha = -0.5 * at::square(e_alpha) - kHalfLog2Pi - alpha_log_scale_;
    at::Tensor lq_beta = (-0.5 * at::square(e_beta) - kHalfLog2Pi - beta_log_scale_).sum(1);
    return (log_joint - (lq_alpha + lq_beta)).mean();
  }

  at::ScalarType dtype_;  // the parameters, data and noise
  int64_t S_;
  at::Generator gen_;
  at::Tensor X_, y_;
  int64_t N_, P_, B_;
  at::Tensor alpha_loc_, alpha_log_scale_, beta_loc_, beta_log_scale_;
  torch::optim::Adam adam_;
};

}  // namespace

std::unique_ptr<Baseline> make_logistic_baseline(const model::Data& data, int64_t S, int64_t B, uint64_t seed, at::ScalarType dtype) {
  return std::make_unique<LogisticRegression>(data, S, B, seed, dtype);
}

}  // namespace vguide::bench
