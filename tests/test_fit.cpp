// End-to-end: fit a conjugate Normal–Normal model through the plugins and compare
// with the exact posterior.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "test_models.hpp"
#include "vguide/runtime/elbo.hpp"
#include "vguide/runtime/plugin_manager.hpp"

namespace vguide {
namespace {

test::ConjugateNormalModel make_model() {
  auto gen = at::detail::createCPUGenerator(123);
  at::Tensor y = 4.0 + 1.5 * at::randn({20}, gen, at::kFloat);
  return test::ConjugateNormalModel(/*m0=*/1.0, /*s0=*/2.0, /*sigma=*/1.5, y);
}

TEST(Fit, NormalGuideRecoversTheExactPosterior) {
  auto model = make_model();
  PluginManager manager(21);
  manager.load("normal");
  auto guide = manager.create("normal", model, {"y"}, {});
  test::fit_adam(model, *guide, 32, {{1500, 0.05}, {1500, 0.005}});
  auto summary = summarize(*guide, 100000);
  ASSERT_EQ(summary.size(), 1u);
  const double mean = summary[0].mean.item<double>(), sd = summary[0].sd.item<double>();
  EXPECT_NEAR(mean, model.posterior_mean(), 0.02 * std::abs(model.posterior_mean()));
  EXPECT_NEAR(sd, model.posterior_sd(), 0.05 * model.posterior_sd());
}

TEST(Fit, DeltaGuideFindsTheExactMode) {
  auto model = make_model();
  PluginManager manager(22);
  manager.load("delta");
  auto guide = manager.create("delta", model, {"y"}, {});
  test::fit_adam(model, *guide, 1, {{1500, 0.05}, {1000, 0.005}});
  auto draw = guide->rsample(particles(1)).at("mu");
  // For a Normal posterior the mode is the mean.
  EXPECT_NEAR(draw.item<double>(), model.posterior_mean(), 1e-3);
}

}  // namespace
}  // namespace vguide
