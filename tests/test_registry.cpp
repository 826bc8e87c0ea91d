// The latent registry: order, offsets, flatten/unflatten with batch dims,
// constrain/unconstrain, and its errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "test_models.hpp"
#include "test_util.hpp"
#include "vguide/registry.hpp"

namespace vguide {
namespace {

test::SitesModel toy_model() {
  using namespace constraints;
  return test::SitesModel({{"a", {2, 3}, real()},
                           {"y", {10}, real()},
                           {"b", {}, positive()},
                           {"c", {4}, simplex()},
                           {"L", {3, 3}, corr_cholesky()}});
}

TEST(Registry, OrderOffsetsAndDims) {
  auto model = toy_model();
  auto reg = LatentRegistry::from_model(model, {"y"});
  EXPECT_EQ(reg.names(), (std::vector<std::string>{"a", "b", "c", "L"}));
  EXPECT_EQ(reg.total_unconstrained_dim(), 6 + 1 + 3 + 3);
  EXPECT_EQ(reg.site("a").offset, 0);
  EXPECT_EQ(reg.site("b").offset, 6);
  EXPECT_EQ(reg.site("c").offset, 7);
  EXPECT_EQ(reg.site("L").offset, 10);
  EXPECT_EQ(reg.site("c").unconstrained_shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(reg.site("c").constrained_dim, 4);
  EXPECT_EQ(reg.site("L").unconstrained_dim, 3);
  EXPECT_EQ(reg.site("b").support, constraints::positive());
  EXPECT_FALSE(reg.contains("y"));
}

TEST(Registry, FlattenUnflattenRoundTripKeepsBatchDims) {
  auto model = toy_model();
  auto reg = LatentRegistry::from_model(model, {"y"});
  auto flat = torch::randn({5, 2, reg.total_unconstrained_dim()});
  auto per_site = reg.unflatten_unconstrained(flat);
  EXPECT_EQ(per_site.at("a").sizes().vec(), (std::vector<int64_t>{5, 2, 2, 3}));
  EXPECT_EQ(per_site.at("b").sizes().vec(), (std::vector<int64_t>{5, 2}));
  EXPECT_EQ(per_site.at("c").sizes().vec(), (std::vector<int64_t>{5, 2, 3}));
  // The site's block of the flat vector is the site, in row-major order.
  EXPECT_TRUE(torch::equal(per_site.at("a").reshape({5, 2, 6}), flat.narrow(-1, 0, 6)));
  EXPECT_TRUE(torch::equal(reg.flatten_unconstrained(per_site), flat));
  // No batch dims at all.
  auto single = torch::randn({reg.total_unconstrained_dim()});
  EXPECT_TRUE(torch::equal(reg.flatten_unconstrained(reg.unflatten_unconstrained(single)), single));
}

TEST(Registry, ConstrainUnconstrainRoundTripWithMatchingJacobians) {
  auto model = toy_model();
  auto reg = LatentRegistry::from_model(model, {"y"});
  auto flat = torch::randn({7, reg.total_unconstrained_dim()}, torch::kDouble);
  auto [values, ladj] = reg.constrain(flat);
  EXPECT_EQ(values.at("L").sizes().vec(), (std::vector<int64_t>{7, 3, 3}));
  EXPECT_EQ(ladj.sizes().vec(), (std::vector<int64_t>{7}));
  EXPECT_TRUE(constraints::simplex().check(values.at("c")).all().item<bool>());
  auto [back, ladj_back] = reg.unconstrain(values);
  EXPECT_TRUE(torch::allclose(back, flat, 1e-8, 1e-8));
  EXPECT_TRUE(torch::allclose(ladj_back, ladj, 1e-8, 1e-8));
  // The total is the sum of every site's own log|det J|.
  double expected = 0;
  for (const auto& site : reg.sites()) {
    auto z = flat[2].narrow(0, site.offset, site.unconstrained_dim).reshape(site.unconstrained_shape);
    expected += site.bijector->log_abs_det_jacobian(z, site.bijector->forward(z)).sum().item<double>();
  }
  EXPECT_NEAR(ladj[2].item<double>(), expected, 1e-9);
}

TEST(Registry, GroupedSitesConstrainAsEachOnItsOwn) {
  // Runs of adjacent sites with one elementwise support share a bijector call; the
  // values, the total log|det J| and its gradient are those of each site's own
  // bijector, and real sites contribute no Jacobian term.
  using namespace constraints;
  test::SitesModel model({{"p1", {}, positive()},
                          {"p2", {2, 2}, positive()},
                          {"r1", {3}, real()},
                          {"r2", {}, real()},
                          {"u1", {2}, interval(-1.0, 2.0)},
                          {"u2", {}, interval(-1.0, 2.0)},
                          {"u3", {}, interval(0.0, 2.0)},
                          {"s", {3}, simplex()},
                          {"p3", {}, positive()}});
  auto reg = LatentRegistry::from_model(model, {});
  const at::Tensor flat = torch::randn({4, reg.total_unconstrained_dim()}, torch::kDouble).requires_grad_(true);
  auto [values, ladj] = reg.constrain(flat);
  at::Tensor expected_ladj = torch::zeros({4}, torch::kDouble);
  for (const auto& site : reg.sites()) {
    SCOPED_TRACE(site.name);
    std::vector<int64_t> shape{4};
    shape.insert(shape.end(), site.unconstrained_shape.begin(), site.unconstrained_shape.end());
    const at::Tensor z = flat.narrow(-1, site.offset, site.unconstrained_dim).reshape(shape);
    const at::Tensor v = site.bijector->forward(z);
    at::Tensor l = site.bijector->log_abs_det_jacobian(z, v);
    while (l.dim() > 1) l = l.sum(-1);
    expected_ladj = expected_ladj + l;
    ASSERT_EQ(values.at(site.name).sizes(), v.sizes());
    EXPECT_TRUE(torch::allclose(values.at(site.name), v, 1e-12, 1e-12));
  }
  EXPECT_TRUE(torch::allclose(ladj, expected_ladj, 1e-12, 1e-12));
  const at::Tensor g = torch::autograd::grad({ladj.sum()}, {flat})[0];
  const at::Tensor want = torch::autograd::grad({expected_ladj.sum()}, {flat})[0];
  EXPECT_TRUE(torch::allclose(g, want, 1e-12, 1e-12));
  // The real sites' coordinates carry no Jacobian gradient.
  EXPECT_EQ(g.narrow(-1, reg.site("r1").offset, 4).abs().sum().item<double>(), 0.0);

  // All real: log|det J| is zero, and unconstrain is the identity.
  test::SitesModel reals({{"a", {2}, real()}, {"b", {}, real()}});
  auto flat_reg = LatentRegistry::from_model(reals, {});
  const at::Tensor z = torch::randn({3, 3});
  auto [v, zero] = flat_reg.constrain(z);
  EXPECT_TRUE(torch::equal(zero, torch::zeros({3})));
  auto [back, zero_back] = flat_reg.unconstrain(v);
  EXPECT_TRUE(torch::equal(back, z));
  EXPECT_TRUE(torch::equal(zero_back, torch::zeros({3})));
}

// Each site's own bijector on its slice of `flat`: values and the summed log|det J|.
std::pair<SiteValues, at::Tensor> each_on_its_own(const LatentRegistry& reg, const at::Tensor& flat) {
  const int64_t S = flat.size(0);
  SiteValues values;
  at::Tensor ladj = torch::zeros({S}, flat.options().requires_grad(false));
  for (const auto& site : reg.sites()) {
    std::vector<int64_t> shape{S};
    shape.insert(shape.end(), site.unconstrained_shape.begin(), site.unconstrained_shape.end());
    const at::Tensor z = flat.narrow(-1, site.offset, site.unconstrained_dim).reshape(shape);
    const at::Tensor v = site.bijector->forward(z);
    at::Tensor l = site.bijector->log_abs_det_jacobian(z, v);
    while (l.dim() > 1) l = l.sum(-1);
    ladj = ladj + l;
    values.emplace(site.name, v);
  }
  return {values, ladj};
}

TEST(Registry, ElementwiseSitesConstrainAsOneNodeWithEachBijectorsValuesAndDerivatives) {
  // Identity, shifted-exp and sigmoid supports run as one autograd node; values,
  // log|det J|, gradients and second derivatives (create_graph) must be those of
  // each site's own bijector, in float32 and float64.
  using namespace constraints;
  test::SitesModel model({{"r", {3}, real()},
                          {"p", {}, positive()},
                          {"g", {2, 2}, greater_than(-1.5)},
                          {"l", {2}, less_than(0.5)},
                          {"i", {}, interval(-1.0, 2.0)},
                          {"u", {3}, unit_interval()},
                          {"r2", {}, real()}});
  auto reg = LatentRegistry::from_model(model, {});
  for (const auto dtype : {torch::kDouble, torch::kFloat}) {
    SCOPED_TRACE(dtype == torch::kDouble ? "double" : "float");
    const double tol = dtype == torch::kDouble ? 1e-12 : 2e-5;
    auto gen = at::detail::createCPUGenerator(17);
    const at::Tensor flat = (2.0 * torch::randn({5, reg.total_unconstrained_dim()}, gen, dtype)).requires_grad_(true);
    auto [values, ladj] = reg.constrain(flat);
    auto [want_values, want_ladj] = each_on_its_own(reg, flat);
    EXPECT_EQ(ladj.grad_fn()->name(), "FusedConstrainBackward");
    // A random functional of every output, so that each output's gradient counts.
    const at::Tensor wl = torch::randn({5}, gen, dtype);
    at::Tensor f = (ladj * ladj * wl).sum(), want_f = (want_ladj * want_ladj * wl).sum();
    for (const auto& site : reg.sites()) {
      SCOPED_TRACE(site.name);
      ASSERT_EQ(values.at(site.name).sizes(), want_values.at(site.name).sizes());
      EXPECT_TRUE(torch::allclose(values.at(site.name), want_values.at(site.name), tol, tol));
      const at::Tensor w = torch::randn(values.at(site.name).sizes(), gen, dtype);
      // Squared, so that the functional has a second derivative through every site.
      f = f + (values.at(site.name) * values.at(site.name) * w).sum();
      want_f = want_f + (want_values.at(site.name) * want_values.at(site.name) * w).sum();
    }
    EXPECT_TRUE(torch::allclose(ladj, want_ladj, tol, tol));
    const at::Tensor g = torch::autograd::grad({f}, {flat}, {}, true, true)[0];
    const at::Tensor want_g = torch::autograd::grad({want_f}, {flat}, {}, true, true)[0];
    EXPECT_TRUE(torch::allclose(g, want_g, tol, tol)) << (g - want_g).abs().max().item<double>();
    const at::Tensor v = torch::randn(flat.sizes(), gen, dtype);
    const at::Tensor h = torch::autograd::grad({(g * v).sum()}, {flat})[0];
    const at::Tensor want_h = torch::autograd::grad({(want_g * v).sum()}, {flat})[0];
    EXPECT_TRUE(torch::allclose(h, want_h, 10 * tol, 10 * tol)) << (h - want_h).abs().max().item<double>();
  }
  // A support without a closed-form kernel (simplex) takes the LibTorch ops.
  test::SitesModel mixed({{"p", {}, positive()}, {"s", {3}, simplex()}});
  auto mixed_reg = LatentRegistry::from_model(mixed, {});
  auto [mv, ml] = mixed_reg.constrain(torch::randn({2, 3}, torch::kDouble).requires_grad_(true));
  EXPECT_NE(ml.grad_fn()->name(), "FusedConstrainBackward");
}

TEST(Registry, DiscreteLatentIsAnErrorNamingTheSite) {
  test::SitesModel model({{"k", {}, constraints::real(), /*discrete=*/true},
                          {"mu", {}, constraints::real()},
                          {"y", {}, constraints::real()}});
  EXPECT_EQ(test::message_of<std::invalid_argument>([&] { LatentRegistry::from_model(model, {"y"}); }),
            "LatentRegistry: latent site 'k' is discrete; these guides need continuous latents (observe it, or "
            "marginalise it out of the model)");
  // Observed, a discrete site is fine.
  EXPECT_EQ(LatentRegistry::from_model(model, {"y", "k"}).names(), std::vector<std::string>{"mu"});
}

TEST(Registry, ObservedNameThatIsNotASite) {
  auto model = toy_model();
  EXPECT_EQ(test::message_of<std::invalid_argument>([&] { LatentRegistry::from_model(model, {"y", "z"}); }),
            "LatentRegistry: observed name 'z' is not a site of toy (sites: L, a, b, c, y)");
}

TEST(Registry, NoLatentSitesIsAnErrorWhereAGuideNeedsOne) {
  test::SitesModel model({{"y", {}, constraints::real()}});
  auto reg = LatentRegistry::from_model(model, {"y"});
  EXPECT_TRUE(reg.empty());
  EXPECT_EQ(test::message_of<std::invalid_argument>([&] { reg.require_latents("normal"); }),
            "normal: the model has no latent sites, so there is nothing to fit (observed: y)");
}

TEST(Registry, MissingAndMisshapenValuesAreNamed) {
  auto model = toy_model();
  auto reg = LatentRegistry::from_model(model, {"y"});
  auto [values, ladj] = reg.constrain(torch::randn({2, reg.total_unconstrained_dim()}));
  values.erase("b");
  EXPECT_EQ(test::message_of<std::invalid_argument>([&] { reg.unconstrain(values, "log_prob"); }),
            "log_prob: missing value for latent site 'b'");
  values["b"] = torch::ones({2, 5});
  EXPECT_EQ(test::message_of<std::invalid_argument>([&] { reg.unconstrain(values, "log_prob"); }),
            "log_prob: site 'b' has batch shape [2, 5], but site 'a' has [2]");
  values["b"] = torch::ones({2});
  values["c"] = torch::ones({2, 5}) / 5;
  EXPECT_EQ(test::message_of<std::invalid_argument>([&] { reg.unconstrain(values, "log_prob"); }),
            "log_prob: site 'c' has shape [2, 5], but its site shape is [4] (after any batch dims)");
  EXPECT_EQ(test::message_of<std::invalid_argument>([&] { reg.unflatten_unconstrained(torch::zeros({2, 4})); }),
            "unflatten_unconstrained: expected a last dim of 13 (the flat unconstrained size), got shape [2, 4]");
  EXPECT_THROW(reg.site("nope"), std::out_of_range);
}

TEST(Registry, DuplicateSiteNamesAreAnError) {
  test::SitesModel model({{"a", {}, constraints::real()}, {"a", {2}, constraints::real()}});
  EXPECT_EQ(test::message_of<std::invalid_argument>([&] { LatentRegistry::from_model(model, {}); }),
            "LatentRegistry: site 'a' appears twice in toy");
}

TEST(Registry, BadSiteShapeForItsSupportNamesTheSite) {
  test::SitesModel model({{"S", {2, 3}, constraints::positive_definite()}});
  EXPECT_EQ(test::message_of<std::invalid_argument>([&] { LatentRegistry::from_model(model, {}); }),
            "LatentRegistry: site 'S': positive_definite: a site of shape [2, 3] cannot carry this support; it "
            "must end in a square matrix (K, K)");
}

}  // namespace
}  // namespace vguide
