// The mixture guide: its density against the closed form, component frequencies,
// two modes held by the stratified estimator, temperature annealing, and each error.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "test_models.hpp"
#include "vguide/runtime/elbo.hpp"
#include "vguide/runtime/plugin_manager.hpp"

namespace vguide {
namespace {

class MixtureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* f : {"normal", "iaf", "delta", "mixture"}) manager_.load(f);
  }
  std::string error_of(const Model& model, const std::vector<std::string>& options) {
    try {
      manager_.create("mixture", model, {}, options);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "(no error)";
  }
  // Set named tensors (parameters or buffers) of a guide by name.
  static void set(Guide& g, const std::string& name, const at::Tensor& value) {
    torch::NoGradGuard no_grad;
    auto params = g.named_parameters();
    if (params.contains(name)) {
      params[name].copy_(value);
      return;
    }
    g.named_buffers()[name].copy_(value);
  }
  PluginManager manager_{23};
  test::SitesModel scalar_{{{"z", {}, constraints::real()}}};
};

TEST_F(MixtureTest, LogProbIsTheClosedFormTwoComponentDensity) {
  auto g = manager_.create("mixture", scalar_, {}, {"components=normal,normal"});
  g->to(torch::kDouble);
  set(*g, "logits", torch::tensor({0.3, -0.4}, torch::kDouble));
  set(*g, "component_1.loc", torch::tensor({-1.0}, torch::kDouble));
  set(*g, "component_1.log_scale", torch::tensor({std::log(0.5)}, torch::kDouble));
  set(*g, "component_2.loc", torch::tensor({2.0}, torch::kDouble));
  set(*g, "component_2.log_scale", torch::tensor({std::log(1.5)}, torch::kDouble));
  const double p1 = std::exp(0.3) / (std::exp(0.3) + std::exp(-0.4)), p2 = 1 - p1;
  auto normal = [](double x, double m, double s) {
    return std::exp(-0.5 * (x - m) * (x - m) / (s * s)) / (s * std::sqrt(2 * M_PI));
  };
  at::Tensor v = torch::tensor({-2.0, -1.0, 0.3, 2.0, 4.5}, torch::kDouble);
  at::Tensor lp = g->log_prob(particles(5, torch::kDouble), {{"z", v}});
  for (int i = 0; i < 5; ++i) {
    const double x = v[i].item<double>();
    EXPECT_NEAR(lp[i].item<double>(), std::log(p1 * normal(x, -1, 0.5) + p2 * normal(x, 2, 1.5)), 1e-10);
  }
}

TEST_F(MixtureTest, DrawFrequenciesMatchTheWeights) {
  auto g = manager_.create("mixture", scalar_, {}, {"components=normal,normal"});
  set(*g, "logits", torch::tensor({0.0f, std::log(3.0f)}));  // π = (1/4, 3/4)
  set(*g, "component_1.loc", torch::tensor({-10.0f}));
  set(*g, "component_2.loc", torch::tensor({10.0f}));
  at::Tensor z = g->sample(particles(40000)).at("z");
  const double right = (z > 0).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(right, 0.75, 0.015);
  EXPECT_NEAR(g->diagnostics().at("mixture.weight_2"), 0.75, 1e-6);
}

// z ~ Normal(0, 3), y ~ Normal(z², 0.5) with y = 4: two symmetric modes at z = ±2.
class TwoModes : public Model {
 public:
  const std::vector<SiteInfo>& sites() const override { return sites_; }
  at::Tensor log_joint(const at::Tensor&, const SiteValues& v) const override {
    const at::Tensor& z = v.at("z");
    return math::normal_log_prob(z, torch::zeros({}), torch::full({}, 3.0)) +
           math::normal_log_prob(torch::full({}, 4.0), z * z, torch::full({}, 0.5));
  }
  std::vector<SiteInfo> sites_{{"z", {}, constraints::real()}};
};

double share_on_positive_mode(Guide& g) {
  at::Tensor z = g.sample(particles(20000)).at("z");
  return (z > 0).to(torch::kDouble).mean().item<double>();
}

TEST_F(MixtureTest, StratifiedMixtureHoldsBothModesWhereOneNormalHoldsOne) {
  TwoModes model;
  auto mixture = manager_.create("mixture", model, {}, {"components=normal,normal"});
  test::fit_adam(model, *mixture, 8, {{1500, 0.02}, {500, 0.005}});
  const double share = share_on_positive_mode(*mixture);
  EXPECT_GT(share, 0.25);
  EXPECT_LT(share, 0.75);
  auto single = manager_.create("normal", model, {}, {});
  test::fit_adam(model, *single, 8, {{1500, 0.02}, {500, 0.005}});
  const double single_share = share_on_positive_mode(*single);
  EXPECT_TRUE(single_share < 0.02 || single_share > 0.98) << single_share;
  // The mixture's bound is the better one: it covers the mass the single guide misses.
  torch::NoGradGuard no_grad;
  EXPECT_GT(elbo(model, *mixture, 20000).item<double>(), elbo(model, *single, 20000).item<double>() + 0.3);
}

TEST_F(MixtureTest, NormalAndIafMixFitAndDraw) {
  test::SitesModel model({{"a", {}, constraints::real()}, {"b", {}, constraints::positive()}});
  auto g = manager_.create("mixture", model, {}, {"components=normal,iaf", "2.num_flows=2", "1.init_scale=0.5"});
  // The forwarded option reached component 1.
  EXPECT_NEAR(std::exp(g->named_parameters()["component_1.log_scale"][0].item<double>()), 0.5, 1e-6);
  const double before = -elbo(model, *g, 64).item<double>();
  test::fit_adam(model, *g, 8, {{300, 0.02}});
  const double after = -elbo(model, *g, 64).item<double>();
  EXPECT_LT(after, before);
  auto draws = g->sample(particles(100));
  EXPECT_EQ(draws.at("b").sizes().vec(), (std::vector<int64_t>{100}));
  EXPECT_TRUE(constraints::positive().check(draws.at("b")).all().item<bool>());
  std::ostringstream printed;
  g->pretty_print(printed);
  EXPECT_EQ(printed.str(), "vguide::MixtureGuide(components=normal,iaf, estimator=stratified)");
}

TEST_F(MixtureTest, GumbelSoftmaxDrawsAndAnnealsItsTemperature) {
  auto g = manager_.create("mixture", scalar_,
                           {}, {"components=normal,normal", "estimator=gumbel_softmax", "init_temperature=2",
                                "final_temperature=0.5"});
  auto soft = g->rsample(particles(8));
  EXPECT_EQ(soft.at("z").sizes().vec(), (std::vector<int64_t>{8}));
  auto loss = -elbo(scalar_, *g, 8);
  loss.backward();
  EXPECT_TRUE(g->named_parameters()["logits"].grad().defined());
  g->before_step({0, 101});
  EXPECT_DOUBLE_EQ(g->diagnostics().at("mixture.temperature"), 2.0);
  g->before_step({50, 101});
  EXPECT_NEAR(g->diagnostics().at("mixture.temperature"), 1.0, 1e-6);  // geometric midpoint
  g->before_step({100, 101});
  EXPECT_NEAR(g->diagnostics().at("mixture.temperature"), 0.5, 1e-6);
  auto linear = manager_.create("mixture", scalar_, {},
                                {"components=normal,normal", "estimator=gumbel_softmax", "init_temperature=2",
                                 "final_temperature=0.5", "anneal=linear"});
  linear->before_step({50, 101});
  EXPECT_NEAR(linear->diagnostics().at("mixture.temperature"), 1.25, 1e-6);
}

TEST_F(MixtureTest, SaveAndLoadRestoresWeightsTemperatureAndComponents) {
  const std::vector<std::string> options{"components=normal,iaf", "estimator=gumbel_softmax",
                                         "init_temperature=2", "final_temperature=0.5"};
  test::SitesModel model({{"a", {}, constraints::real()}, {"b", {}, constraints::real()}});
  auto g = manager_.create("mixture", model, {}, options);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : g->parameters()) p.add_(torch::randn(p.sizes()) * 0.1);
  }
  g->before_step({60, 101});
  std::stringstream buffer;
  torch::serialize::OutputArchive out;
  g->save(out);
  out.save_to(buffer);
  auto fresh = manager_.create("mixture", model, {}, options);
  torch::serialize::InputArchive in;
  in.load_from(buffer);
  fresh->load(in);
  auto a = g->named_parameters(), b = fresh->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& p : a) EXPECT_TRUE(torch::equal(p.value(), b[p.key()])) << p.key();
  EXPECT_DOUBLE_EQ(fresh->diagnostics().at("mixture.temperature"), g->diagnostics().at("mixture.temperature"));
  EXPECT_LT(fresh->diagnostics().at("mixture.temperature"), 2.0);
}

TEST_F(MixtureTest, EachErrorNamesWhatIsWrong) {
  EXPECT_EQ(error_of(scalar_, {"components=normal"}),
            "plugin " + manager_.find("mixture").string() +
                ": factory of 'mixture' failed: mixture: components lists 1 family (normal), but a mixture needs at "
                "least 2 (e.g. components=normal,normal)");
  EXPECT_NE(error_of(scalar_, {}).find("mixture: components lists 0 families, but a mixture needs at least 2"),
            std::string::npos);
  EXPECT_NE(error_of(scalar_, {"components=normal,nosuch"})
                .find("mixture: component 2 (nosuch): unknown guide family 'nosuch'; loaded families: delta, iaf, "
                      "mixture, normal"),
            std::string::npos);
  EXPECT_EQ(error_of(scalar_, {"components=normal,normal", "init_temperature=0"}),
            "mixture: bad value for option 'init_temperature': 0 is out of range (must be >0); valid options: "
            "components= estimator=stratified init_temperature=1.0 final_temperature=auto anneal=exponential "
            "<k>.<option>=");
  EXPECT_NE(error_of(scalar_, {"components=normal,mixture"})
                .find("mixture: component 2 (mixture) is itself a mixture; list all the components in one mixture "
                      "instead"),
            std::string::npos);
  EXPECT_NE(error_of(scalar_, {"components=normal,delta"})
                .find("mixture: component 2 (delta) is a point mass while it is fitted, so it has no density to mix"),
            std::string::npos);
  EXPECT_NE(error_of(scalar_, {"components=normal,normal", "3.init_scale=1"})
                .find("mixture: option '3.init_scale=1' names component 3, but there are 2"),
            std::string::npos);
  EXPECT_NE(error_of(scalar_, {"components=normal,normal", "2.scale=1"})
                .find("mixture: component 2 (normal): normal: unknown option 'scale'"),
            std::string::npos);
  EXPECT_EQ(error_of(scalar_, {"components=normal,normal", "<k>.<option>=1"}),
            "mixture: unknown option '<k>.<option>'; valid options: components= estimator=stratified "
            "init_temperature=1.0 final_temperature=auto anneal=exponential <k>.<option>=");
}

// A family that builds a normal guide over all but the first latent: its latents
// differ from the mixture's.
std::shared_ptr<Guide> make_partial(const FactoryArgs& a) {
  std::vector<std::string> observed = a.observed_names;
  observed.push_back(a.model.sites().front().name);
  return a.context.create("normal", a.model, observed, {});
}
struct NoOptions {
  static constexpr OptionSchema schema() { return {}; }
};
int partial_factory(const FactoryArgs* args, std::shared_ptr<Guide>* out, char* error, uint32_t size) {
  return detail::call_factory(make_partial, args, out, error, size);
}

TEST_F(MixtureTest, ComponentsOverDifferentLatentsAreNamed) {
  vguide_plugin_descriptor partial{sizeof(vguide_plugin_descriptor), VGUIDE_ABI_VERSION, VGUIDE_SDK_VERSION,
                                   TORCH_VERSION, "partial", "normal over all but the first latent", nullptr, 0,
                                   &partial_factory};
  manager_.register_builtin(partial);
  test::SitesModel model({{"a", {}, constraints::real()}, {"b", {}, constraints::real()}});
  EXPECT_NE(error_of(model, {"components=normal,partial"})
                .find("mixture: component 2 (partial) has latents [b], but component 1 (normal) has [a, b]"),
            std::string::npos)
      << error_of(model, {"components=normal,partial"});
}

}  // namespace
}  // namespace vguide
