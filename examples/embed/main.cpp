// Embedding vguide: a model written in C++, the `normal` guide loaded as a plugin,
// and a plain Adam loop on the ELBO. Prints the posterior mean and sd of each site.
//
//   mu    ~ Normal(0, 10)
//   sigma ~ HalfNormal(5)
//   y_i   ~ Normal(mu, sigma),  i = 1..N
#include <torch/torch.h>

#include <cstdio>
#include <exception>

#include "vguide/guide.hpp"
#include "vguide/math/normal_log_prob.hpp"
#include "vguide/model.hpp"
#include "vguide/runtime/elbo.hpp"
#include "vguide/runtime/plugin_manager.hpp"

namespace {

class NormalScaleModel final : public vguide::Model {
 public:
  explicit NormalScaleModel(at::Tensor y) : y_(std::move(y)) {
    sites_ = {{"mu", {}, vguide::constraints::real()}, {"sigma", {}, vguide::constraints::positive()}};
  }
  const std::vector<vguide::SiteInfo>& sites() const override { return sites_; }
  std::string name() const override { return "normal_scale"; }

  at::Tensor log_joint(const at::Tensor&, const vguide::SiteValues& v) const override {
    using vguide::math::normal_log_prob;
    const at::Tensor& mu = v.at("mu");        // (S,)
    const at::Tensor& sigma = v.at("sigma");  // (S,)
    at::Tensor prior = normal_log_prob(mu, torch::zeros({}), torch::full({}, 10.0)) +
                       normal_log_prob(sigma, torch::zeros({}), torch::full({}, 5.0)) + std::log(2.0);
    at::Tensor lik = normal_log_prob(y_.unsqueeze(0), mu.unsqueeze(1), sigma.unsqueeze(1)).sum(1);
    return prior + lik;
  }

 private:
  at::Tensor y_;
  std::vector<vguide::SiteInfo> sites_;
};

}  // namespace

int main() try {
  // 200 observations with mean 3 and sd 2, from a seeded generator.
  auto gen = at::detail::createCPUGenerator(2026);
  const at::Tensor y = 3.0 + 2.0 * at::randn({200}, gen, at::kFloat);
  NormalScaleModel model(y);

  vguide::PluginManager plugins(/*seed=*/7);
  plugins.load("normal");
  auto guide = plugins.create("normal", model, /*observed_names=*/{}, {"init_scale=0.1"});

  torch::optim::Adam adam(guide->parameters(), torch::optim::AdamOptions(0.05));
  for (int step = 0; step < 1500; ++step) {
    adam.zero_grad();
    at::Tensor loss = -vguide::elbo(model, *guide, /*num_particles=*/8);
    loss.backward();
    adam.step();
    if (step % 500 == 0) std::printf("step %4d  ELBO %10.3f\n", step, -loss.item<double>());
  }

  std::printf("\nposterior (normal guide, 4000 draws)\n%-8s %10s %10s\n", "site", "mean", "sd");
  for (const auto& s : vguide::summarize(*guide, 4000))
    std::printf("%-8s %10.4f %10.4f\n", s.name.c_str(), s.mean.item<double>(), s.sd.item<double>());
  std::printf("\nsample mean of y %.4f, sample sd %.4f (n = %lld)\n", y.mean().item<double>(),
              y.std().item<double>(), static_cast<long long>(y.numel()));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "embed: error: %s\n", e.what());
  return 1;
}
