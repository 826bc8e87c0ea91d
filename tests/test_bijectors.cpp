// Every bijector: round trips, log|det J| against the autograd Jacobian, support
// membership, batch dims, gradients, shape errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "vguide/bijector.hpp"
#include "vguide/model.hpp"

namespace vguide {
namespace {

struct Case {
  std::string label;
  Constraint constraint;
  std::vector<int64_t> shape;
};

std::vector<Case> all_cases() {
  using namespace constraints;
  return {
      {"real", real(), {3}},
      {"positive", positive(), {3}},
      {"greater_than", greater_than(1.5), {3}},
      {"less_than", less_than(-2.0), {3}},
      {"interval", interval(-1.0, 3.0), {3}},
      {"unit_interval", unit_interval(), {3}},
      {"simplex", simplex(), {4}},
      {"ordered", ordered(), {4}},
      {"positive_ordered", positive_ordered(), {4}},
      {"lower_cholesky", lower_cholesky(), {3, 3}},
      {"corr_cholesky", corr_cholesky(), {3, 3}},
      {"positive_definite", positive_definite(), {3, 3}},
  };
}

std::vector<int64_t> cat(std::vector<int64_t> a, const std::vector<int64_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The coordinates of a constrained event that the unconstrained vector maps onto
// one-to-one (the rest are determined by them): the density's reference measure.
torch::Tensor free_coordinates(const Case& c, const torch::Tensor& v) {
  switch (c.constraint.kind()) {
    case ConstraintKind::simplex: return v.narrow(-1, 0, v.size(-1) - 1);
    case ConstraintKind::lower_cholesky:
    case ConstraintKind::positive_definite:
    case ConstraintKind::corr_cholesky: {
      const int64_t K = v.size(-1);
      const int64_t offset = c.constraint.kind() == ConstraintKind::corr_cholesky ? -1 : 0;
      auto rc = torch::tril_indices(K, K, offset);
      return v.index({rc[0], rc[1]});
    }
    default: return v.flatten();
  }
}

void PrintTo(const Case& c, std::ostream* os) { *os << c.label; }

// How far out the round trips go: far enough that values near the edge of the
// support. Σ = L Lᵀ squares L's conditioning, so positive_definite stays closer.
double edge_spread(const Case& c) { return c.constraint.kind() == ConstraintKind::positive_definite ? 1.5 : 4.0; }

class BijectorTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    torch::manual_seed(0);
    bijector_ = biject_to(GetParam().constraint);
    ushape_ = bijector_->unconstrained_shape(GetParam().shape);
  }
  std::shared_ptr<const Bijector> bijector_;
  std::vector<int64_t> ushape_;
};

TEST_P(BijectorTest, CodomainIsTheConstraint) { EXPECT_EQ(bijector_->codomain(), GetParam().constraint); }

TEST_P(BijectorTest, ShapesRoundTrip) {
  EXPECT_EQ(bijector_->constrained_shape(ushape_), GetParam().shape);
}

TEST_P(BijectorTest, InverseOfForwardIsIdentity) {
  // Moderate points and points far out, where the constrained value nears the edge.
  for (double spread : {1.0, edge_spread(GetParam())}) {
    auto z = torch::randn(cat({64}, ushape_), torch::kDouble) * spread;
    auto v = bijector_->forward(z);
    auto back = bijector_->inverse(v);
    EXPECT_TRUE(torch::allclose(back, z, 1e-6, 1e-6))
        << GetParam().label << " spread " << spread << " max err " << (back - z).abs().max().item<double>();
  }
}

TEST_P(BijectorTest, ForwardOfInverseIsIdentity) {
  for (double spread : {1.0, edge_spread(GetParam())}) {
    auto v = bijector_->forward(torch::randn(cat({64}, ushape_), torch::kDouble) * spread);
    auto again = bijector_->forward(bijector_->inverse(v));
    EXPECT_TRUE(torch::allclose(again, v, 1e-7, 1e-9))
        << GetParam().label << " spread " << spread << " max err " << (again - v).abs().max().item<double>();
  }
}

TEST_P(BijectorTest, ForwardLandsInSupport) {
  auto z = torch::randn(cat({7}, ushape_), torch::kDouble) * 3.0;
  auto v = bijector_->forward(z);
  EXPECT_TRUE(GetParam().constraint.check(v, 1e-8).all().item<bool>()) << GetParam().label;
}

TEST_P(BijectorTest, LogDetMatchesAutogradJacobian) {
  for (int trial = 0; trial < 3; ++trial) {
    auto z = (torch::randn(ushape_, torch::kDouble) * 1.5).requires_grad_(true);
    auto v = bijector_->forward(z);
    auto y = free_coordinates(GetParam(), v);
    ASSERT_EQ(y.numel(), z.numel()) << "free coordinates must match the unconstrained size";
    auto J = torch::zeros({y.numel(), z.numel()}, torch::kDouble);
    for (int64_t i = 0; i < y.numel(); ++i) {
      auto g = torch::autograd::grad({y[i]}, {z}, {}, /*retain_graph=*/true, /*create_graph=*/false,
                                     /*allow_unused=*/true)[0];
      if (g.defined()) J[i] = g.flatten();
    }
    auto expected = std::get<1>(torch::linalg_slogdet(J));
    auto got = bijector_->log_abs_det_jacobian(z, v).sum();
    EXPECT_NEAR(got.item<double>(), expected.item<double>(), 1e-8) << GetParam().label << " trial " << trial;
    auto [v2, ladj2] = bijector_->forward_and_log_det(z);
    EXPECT_TRUE(torch::allclose(v2, v));
    EXPECT_NEAR(ladj2.sum().item<double>(), expected.item<double>(), 1e-8);
  }
}

TEST_P(BijectorTest, BatchDimsArePreserved) {
  auto z = torch::randn(cat({2, 5}, ushape_), torch::kDouble);
  auto [v, ladj] = bijector_->forward_and_log_det(z);
  EXPECT_EQ(v.sizes().vec(), cat({2, 5}, GetParam().shape));
  // log|det| reduces exactly the bijector's event dims.
  std::vector<int64_t> expected(z.sizes().begin(), z.sizes().end() - bijector_->event_rank());
  EXPECT_EQ(ladj.sizes().vec(), expected);
  // Each batch element is transformed on its own.
  auto v_one = bijector_->forward(z[1][3]);
  EXPECT_TRUE(torch::allclose(v[1][3], v_one));
  auto [z_back, ladj_inv] = bijector_->inverse_and_log_det(v);
  EXPECT_TRUE(torch::allclose(z_back, z, 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(ladj_inv, ladj, 1e-6, 1e-6));
}

TEST_P(BijectorTest, GradientsFlowAndAreFinite) {
  auto z = torch::randn(cat({4}, ushape_), torch::kDouble).requires_grad_(true);
  auto [v, ladj] = bijector_->forward_and_log_det(z);
  (v.sum() + ladj.sum()).backward();
  ASSERT_TRUE(z.grad().defined());
  EXPECT_TRUE(torch::isfinite(z.grad()).all().item<bool>());
}

TEST_P(BijectorTest, Float32Works) {
  auto z = torch::randn(cat({16}, ushape_), torch::kFloat);
  auto v = bijector_->forward(z);
  EXPECT_EQ(v.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::allclose(bijector_->inverse(v), z, 1e-3, 1e-3)) << GetParam().label;
}

INSTANTIATE_TEST_SUITE_P(AllConstraints, BijectorTest, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.label; });

TEST(Bijector, SimplexZeroIsUniform) {
  auto v = biject_to(constraints::simplex())->forward(torch::zeros({4}, torch::kDouble));
  EXPECT_TRUE(torch::allclose(v, torch::full({5}, 0.2, torch::kDouble)));
}

TEST(Bijector, SiteBatchDimsBroadcast) {
  // A (2, 4) simplex site is two simplices: unconstrained (2, 3).
  auto b = biject_to(constraints::simplex());
  EXPECT_EQ(b->unconstrained_shape({2, 4}), (std::vector<int64_t>{2, 3}));
  auto v = b->forward(torch::randn({6, 2, 3}));
  EXPECT_EQ(v.sizes().vec(), (std::vector<int64_t>{6, 2, 4}));
  EXPECT_TRUE(torch::allclose(v.sum(-1), torch::ones({6, 2})));
  // Matrix supports: (K, K) -> K(K+1)/2 and K(K-1)/2.
  EXPECT_EQ(biject_to(constraints::lower_cholesky())->unconstrained_shape({4, 4}), (std::vector<int64_t>{10}));
  EXPECT_EQ(biject_to(constraints::corr_cholesky())->unconstrained_shape({2, 4, 4}), (std::vector<int64_t>{2, 6}));
}

TEST(Bijector, BadShapesAreNamed) {
  try {
    biject_to(constraints::lower_cholesky())->unconstrained_shape({2, 3});
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "lower_cholesky: a site of shape [2, 3] cannot carry this support; it must end in a "
                           "square matrix (K, K)");
  }
  try {
    biject_to(constraints::simplex())->unconstrained_shape({});
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "simplex: a site of shape [] cannot carry this support; its last dim must be at least 1");
  }
}

TEST(Constraint, CheckRejectsOutsideSupport) {
  using namespace constraints;
  EXPECT_FALSE(positive().check(torch::tensor({-1.0})).item<bool>());
  EXPECT_FALSE(interval(0, 1).check(torch::tensor({1.5})).item<bool>());
  EXPECT_FALSE(simplex().check(torch::tensor({0.5, 0.6})).item<bool>());
  EXPECT_FALSE(ordered().check(torch::tensor({1.0, 0.5})).item<bool>());
  EXPECT_FALSE(positive_ordered().check(torch::tensor({-1.0, 0.5})).item<bool>());
  EXPECT_FALSE(lower_cholesky().check(torch::tensor({{1.0, 0.3}, {0.0, 1.0}})).item<bool>());
  EXPECT_FALSE(corr_cholesky().check(torch::tensor({{1.0, 0.0}, {0.5, 1.0}})).item<bool>());
  EXPECT_FALSE(positive_definite().check(torch::tensor({{1.0, 2.0}, {2.0, 1.0}})).item<bool>());
  EXPECT_TRUE(positive_definite().check(torch::tensor({{2.0, 1.0}, {1.0, 2.0}})).item<bool>());
}

TEST(Constraint, FactoriesValidateTheirBounds) {
  EXPECT_THROW(constraints::interval(1.0, 1.0), std::domain_error);
  EXPECT_THROW(constraints::greater_than(std::nan("")), std::domain_error);
  try {
    constraints::interval(2.0, 1.0);
    FAIL();
  } catch (const std::domain_error& e) {
    EXPECT_STREQ(e.what(), "interval: lower bound 2 must be less than upper bound 1!");
  }
  EXPECT_EQ(constraints::interval(0.0, 2.5).to_string(), "interval(0, 2.5)");
  EXPECT_EQ(constraints::interval(0.0, 2.5), constraints::interval(0.0, 2.5));
  EXPECT_NE(constraints::interval(0.0, 2.5), constraints::interval(0.0, 3.0));
}

}  // namespace
}  // namespace vguide
