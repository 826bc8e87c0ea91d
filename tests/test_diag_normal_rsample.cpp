// vguide::math::diag_normal_rsample (the normal guide's draw and density as one
// autograd node) against the same formulas written with LibTorch ops.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "vguide/math/diag_normal_rsample.hpp"

namespace vguide {
namespace {

// z = loc + exp(log_scale) * eps, log q = Σ_d log N(z_d; loc_d, exp(log_scale_d)).
std::pair<at::Tensor, at::Tensor> by_ops(const at::Tensor& loc, const at::Tensor& log_scale, const at::Tensor& eps) {
  const at::Tensor scale = at::exp(log_scale);
  const at::Tensor z = loc + scale * eps;
  const at::Tensor u = (z - loc) / scale;
  const at::Tensor log_q = (-0.5 * u * u - at::log(scale) - 0.5 * std::log(2 * M_PI)).sum(-1);
  return {z, log_q};
}

struct Inputs {
  at::Tensor loc, log_scale, eps, wz, wq;
};

Inputs inputs(at::ScalarType dtype, int64_t S, int64_t D, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  Inputs in;
  in.loc = at::randn({D}, gen, dtype).set_requires_grad(true);
  in.log_scale = (0.5 * at::randn({D}, gen, dtype)).set_requires_grad(true);
  in.eps = at::randn({S, D}, gen, dtype);
  in.wz = at::randn({S, D}, gen, dtype);  // weights of a functional of both outputs
  in.wq = at::randn({S}, gen, dtype);
  return in;
}

class DiagNormalRsample : public ::testing::TestWithParam<at::ScalarType> {};

TEST_P(DiagNormalRsample, ValuesAndGradientsEqualLibTorchOps) {
  const at::ScalarType dtype = GetParam();
  const double tol = dtype == at::kFloat ? 1e-5 : 1e-12;
  for (const auto& [S, D] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {1, 10}, {16, 10}, {7, 33}}) {
    const Inputs in = inputs(dtype, S, D, 11 + S * D);
    auto [z, log_q] = math::diag_normal_rsample(in.loc, in.log_scale, in.eps);
    auto [z_ref, log_q_ref] = by_ops(in.loc, in.log_scale, in.eps);
    ASSERT_EQ(z.sizes(), z_ref.sizes());
    ASSERT_EQ(log_q.sizes(), log_q_ref.sizes());
    EXPECT_TRUE(at::allclose(z, z_ref, tol, tol)) << "S=" << S << " D=" << D;
    EXPECT_TRUE(at::allclose(log_q, log_q_ref, tol, tol)) << "S=" << S << " D=" << D;
    // Each output alone and both together (the backward sees undefined gradients
    // for an unused output).
    for (int which = 0; which < 3; ++which) {
      auto f = [&](const at::Tensor& a, const at::Tensor& b) {
        at::Tensor out = at::zeros({}, dtype);
        if (which != 1) out = out + (a * in.wz).sum();
        if (which != 0) out = out + (b * in.wq).sum();
        return out;
      };
      const auto g = torch::autograd::grad({f(z, log_q)}, {in.loc, in.log_scale}, {}, true, false, true);
      const auto g_ref = torch::autograd::grad({f(z_ref, log_q_ref)}, {in.loc, in.log_scale}, {}, true, false, true);
      for (int k = 0; k < 2; ++k) {
        const at::Tensor a = g[k].defined() ? g[k] : at::zeros({D}, dtype);
        const at::Tensor b = g_ref[k].defined() ? g_ref[k] : at::zeros({D}, dtype);
        EXPECT_TRUE(at::allclose(a, b, tol, tol)) << "S=" << S << " D=" << D << " output " << which << " input " << k
                                                  << ": " << (a - b).abs().max().item<double>();
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, DiagNormalRsample, ::testing::Values(at::kFloat, at::kDouble));

TEST(DiagNormalRsampleGraph, SecondDerivativesEqualLibTorchOps) {
  // create_graph makes the node differentiate with LibTorch ops; the Hessian-vector
  // product of a functional must be the reference's.
  const Inputs in = inputs(at::kDouble, 5, 4, 3);
  auto hvp = [&](bool fused) {
    auto [z, q] = fused ? math::diag_normal_rsample(in.loc, in.log_scale, in.eps) : by_ops(in.loc, in.log_scale, in.eps);
    const at::Tensor f = (z * z * in.wz).sum() + (q * q * in.wq).sum();
    const auto g = torch::autograd::grad({f}, {in.loc, in.log_scale}, {}, true, true);
    const at::Tensor gv = (g[0] * g[0]).sum() + (g[1] * in.log_scale).sum();
    return torch::autograd::grad({gv}, {in.loc, in.log_scale});
  };
  const auto a = hvp(true), b = hvp(false);
  for (int k = 0; k < 2; ++k) EXPECT_TRUE(at::allclose(a[k], b[k], 1e-10, 1e-12)) << "input " << k;
}

TEST(DiagNormalRsampleGraph, NoGraphWithoutGradMode) {
  const Inputs in = inputs(at::kFloat, 3, 2, 5);
  torch::NoGradGuard no_grad;
  auto [z, q] = math::diag_normal_rsample(in.loc, in.log_scale, in.eps);
  EXPECT_FALSE(z.requires_grad());
  EXPECT_FALSE(q.requires_grad());
}

TEST(DiagNormalRsampleGraph, ShapeErrorsNameTheFunction) {
  const at::Tensor v = at::zeros({3});
  EXPECT_THROW(math::diag_normal_rsample(v, at::zeros({2}), at::zeros({1, 3})), std::invalid_argument);
  EXPECT_THROW(math::diag_normal_rsample(v, v, at::zeros({1, 2})), std::invalid_argument);
  try {
    math::diag_normal_rsample(at::zeros({2, 3}), v, at::zeros({1, 3}));
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("diag_normal_rsample"), std::string::npos);
  }
}

}  // namespace
}  // namespace vguide
