// K Normal means by hand:
//   mu[k] ~ N(0, 10), y[n, k] ~ N(mu[k], 2),
// with q = N(mu).
#include <ATen/CPUGeneratorImpl.h>

#include "baselines.hpp"
#include "common.hpp"

namespace vguide::bench {
namespace {

using detail::kHalfLog2Pi;
using detail::parameter;

class NormalMeans final : public Baseline {
 public:
  NormalMeans(const model::Data& data, int64_t S, uint64_t seed, at::ScalarType dtype)
      : dtype_(dtype),
        S_(S),
        gen_(at::detail::createCPUGenerator(seed)),
        y_(data.get("y").to(dtype)),
        K_(y_.size(1)),
        mu_loc_(parameter({K_}, 0.0, dtype)),
        mu_log_scale_(parameter({K_}, detail::kInitLogScale, dtype)),
        adam_({mu_loc_, mu_log_scale_}, torch::optim::AdamOptions(0.01)) {}

  std::vector<Site> sites() const override { return {{"mu", {K_}, mu_loc_, mu_log_scale_}}; }

  at::Tensor elbo(const std::vector<at::Tensor>& eps, const at::Tensor&) override { return elbo(eps.at(0)); }

  void step() override {
    at::Tensor e_mu = at::randn({S_, K_}, gen_, at::TensorOptions().dtype(dtype_));
    adam_.zero_grad();
    at::Tensor loss = -elbo(e_mu);
    loss.backward();
    adam_.step();
  }

 private:
  at::Tensor elbo(const at::Tensor& e_mu) {
    at::Tensor mu = mu_loc_ + at::exp(mu_log_scale_) * e_mu;  // (S, K)
    at::Tensor lp_mu = (-0.5 * at::square(mu / 10.0) - std::log(10.0) - kHalfLog2Pi).sum(1);
    // y (N, K) against mu (S, 1, K): (S, N, K), summed over rows and means.
    at::Tensor lp_y = (-0.5 * at::square((y_ - mu.unsqueeze(1)) / 2.0) - std::log(2.0) - kHalfLog2Pi).sum({1, 2});
    at::Tensor lq_mu = (-0.5 * at::square(e_mu) - kHalfLog2Pi - mu_log_scale_).sum(1);
    return (lp_mu + lp_y - lq_mu).mean();
  }

  at::ScalarType dtype_;  // the parameters, data and noise
  int64_t S_;
  at::Generator gen_;
  at::Tensor y_;
  int64_t K_;
  at::Tensor mu_loc_, mu_log_scale_;
  torch::optim::Adam adam_;
};

}  // namespace

std::unique_ptr<Baseline> make_normal_means_baseline(const model::Data& data, int64_t S, uint64_t seed, at::ScalarType dtype) {
  return std::make_unique<NormalMeans>(data, S, seed, dtype);
}

}  // namespace vguide::bench
