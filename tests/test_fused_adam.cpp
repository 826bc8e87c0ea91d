// FusedAdam against LibTorch's own Adam: the same parameters, the same gradients,
// step for step; the fused loop must agree to rounding and keep LibTorch's state.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ostream>

#include "vguide/runtime/fused_adam.hpp"

namespace vguide {
namespace {

struct Case {
  at::ScalarType dtype;
  double weight_decay;
};

// A stable test name for CTest (without it gtest prints the struct's bytes, padding included).
std::ostream& operator<<(std::ostream& out, const Case& c) {
  return out << c.dtype << "_weight_decay_" << c.weight_decay;
}

class FusedAdamTest : public ::testing::TestWithParam<Case> {};

std::vector<at::Tensor> leaves(const std::vector<at::Tensor>& values) {
  std::vector<at::Tensor> out;
  for (const auto& v : values) out.push_back(v.clone().set_requires_grad(true));
  return out;
}

TEST_P(FusedAdamTest, FollowsLibTorchAdamStepForStep) {
  const auto [dtype, decay] = GetParam();
  auto gen = at::detail::createCPUGenerator(7);
  const std::vector<at::Tensor> start{at::randn({3, 4}, gen, dtype), at::randn({5}, gen, dtype),
                                      at::randn({}, gen, dtype)};
  std::vector<at::Tensor> ours = leaves(start), theirs = leaves(start);
  const auto options = torch::optim::AdamOptions(0.05).weight_decay(decay);
  FusedAdam fused(ours, options);
  torch::optim::Adam reference(theirs, options);
  const double tol = dtype == at::kFloat ? 2e-6 : 1e-13;
  for (int step = 0; step < 200; ++step) {
    for (size_t k = 0; k < start.size(); ++k) {
      // Gradients of very different sizes, including exact zeros, as a fit sees them.
      at::Tensor g = at::randn(start[k].sizes(), gen, dtype) * std::pow(10.0, step % 7 - 3);
      if (step % 11 == 0) g.zero_();
      ours[k].mutable_grad() = g.clone();
      theirs[k].mutable_grad() = g.clone();
    }
    if (step == 100) {  // a changed learning rate is read from the group, as Fit::step sets it
      for (auto* o : std::vector<torch::optim::Optimizer*>{&fused, &reference})
        for (auto& group : o->param_groups()) group.options().set_lr(0.01);
    }
    fused.step();
    reference.step();
    for (size_t k = 0; k < start.size(); ++k) {
      const double scale = 1.0 + theirs[k].detach().abs().max().item<double>();
      ASSERT_LE((ours[k] - theirs[k]).abs().max().item<double>(), tol * scale) << "parameter " << k << ", step " << step;
    }
  }
  // The state is LibTorch's AdamParamState under LibTorch's keys, so checkpoints
  // (which serialise it) read and write it as they would LibTorch's Adam's.
  ASSERT_EQ(fused.state().size(), start.size());
  for (size_t k = 0; k < start.size(); ++k) {
    const auto key = c10::guts::to_string(ours[k].unsafeGetTensorImpl());
    const auto& s = static_cast<const torch::optim::AdamParamState&>(*fused.state().at(key));
    const auto& r = static_cast<const torch::optim::AdamParamState&>(
        *reference.state().at(c10::guts::to_string(theirs[k].unsafeGetTensorImpl())));
    EXPECT_EQ(s.step(), 200);
    // The moments hold gradients of up to 1e3 (and their squares): relative to their size.
    for (const auto& [a, b] : {std::make_pair(s.exp_avg(), r.exp_avg()), std::make_pair(s.exp_avg_sq(), r.exp_avg_sq())})
      EXPECT_LE((a - b).abs().max().item<double>(), tol * (1.0 + b.abs().max().item<double>())) << "parameter " << k;
  }
}

INSTANTIATE_TEST_SUITE_P(DtypesAndDecay, FusedAdamTest,
                         ::testing::Values(Case{at::kFloat, 0.0}, Case{at::kFloat, 0.1}, Case{at::kDouble, 0.0},
                                           Case{at::kDouble, 0.1}));

TEST(FusedAdam, ContinuesFromAStateLoadedIntoIt) {
  // A resumed fit loads the state of an interrupted one: continuing must give the
  // parameters an uninterrupted run reaches, bit for bit.
  auto gen = at::detail::createCPUGenerator(3);
  const at::Tensor start = at::randn({6}, gen);
  std::vector<at::Tensor> grads;
  for (int i = 0; i < 20; ++i) grads.push_back(at::randn({6}, gen));
  auto run = [&](FusedAdam& adam, at::Tensor& p, int from, int to) {
    for (int i = from; i < to; ++i) {
      p.mutable_grad() = grads[i].clone();
      adam.step();
    }
  };
  at::Tensor whole = start.clone().set_requires_grad(true);
  FusedAdam straight({whole}, torch::optim::AdamOptions(0.1));
  run(straight, whole, 0, 20);

  at::Tensor first = start.clone().set_requires_grad(true);
  FusedAdam before({first}, torch::optim::AdamOptions(0.1));
  run(before, first, 0, 9);
  at::Tensor second = first.detach().clone().set_requires_grad(true);
  FusedAdam after({second}, torch::optim::AdamOptions(0.1));
  const auto& saved =
      static_cast<const torch::optim::AdamParamState&>(*before.state().at(c10::guts::to_string(first.unsafeGetTensorImpl())));
  auto copy = std::make_unique<torch::optim::AdamParamState>();
  copy->step(saved.step());
  copy->exp_avg(saved.exp_avg().clone());
  copy->exp_avg_sq(saved.exp_avg_sq().clone());
  after.state()[c10::guts::to_string(second.unsafeGetTensorImpl())] = std::move(copy);
  run(after, second, 9, 20);
  EXPECT_TRUE(at::equal(second, whole));
}

// step_in_units against the scaling Fit does around LibTorch's Adam: element-wise
// p_before + unit ⊙ Δ, one unit per row, and for a factor L, the step Δ taken on
// Lᵀ∇ then p_before + L Δ.
TEST(FusedAdam, StepsInUnitsAsTheCallersScalingWould) {
  for (const at::ScalarType dtype : {at::kDouble, at::kFloat}) {
    SCOPED_TRACE(dtype == at::kDouble ? "float64" : "float32");
    auto gen = at::detail::createCPUGenerator(11);
    const std::vector<at::Tensor> start{at::randn({5}, gen, dtype), at::randn({4, 3}, gen, dtype),
                                        at::randn({4}, gen, dtype)};
    std::vector<at::Tensor> ours = leaves(start), theirs = leaves(start);
    const auto options = torch::optim::AdamOptions(0.05);
    FusedAdam fused(ours, options);
    torch::optim::Adam reference(theirs, options);
    const double tol = dtype == at::kFloat ? 1e-5 : 1e-12;
    for (int step = 0; step < 50; ++step) {
      const std::vector<at::Tensor> units{at::tril(at::randn({5, 5}, gen, dtype)) + 2 * at::eye(5, dtype),
                                          at::rand({4, 1}, gen, dtype) + 0.5, at::rand({4}, gen, dtype) + 0.5};
      for (size_t k = 0; k < start.size(); ++k) {
        const at::Tensor g = at::randn(start[k].sizes(), gen, dtype);
        ours[k].mutable_grad() = g.clone();
        theirs[k].mutable_grad() = g.clone();
      }
      ASSERT_TRUE(fused.step_in_units(units));
      torch::NoGradGuard no_grad;
      std::vector<at::Tensor> before;
      for (auto& p : theirs) before.push_back(p.detach().clone());
      theirs[0].mutable_grad().copy_(at::mv(units[0].t(), theirs[0].grad()));
      reference.step();
      theirs[0].detach().copy_(before[0] + at::mv(units[0], theirs[0].detach() - before[0]));
      for (size_t k = 1; k < start.size(); ++k) theirs[k].detach().sub_(before[k]).mul_(units[k]).add_(before[k]);
      for (size_t k = 0; k < start.size(); ++k) {
        const double scale = 1.0 + theirs[k].detach().abs().max().item<double>();
        ASSERT_LE((ours[k] - theirs[k]).abs().max().item<double>(), tol * scale) << "parameter " << k << ", step " << step;
      }
    }
  }
  // A unit of another shape is left to the caller, with nothing changed.
  at::Tensor p = at::zeros({3}).set_requires_grad(true);
  p.mutable_grad() = at::ones({3});
  FusedAdam adam({p}, torch::optim::AdamOptions(0.1));
  EXPECT_FALSE(adam.step_in_units({at::ones({3, 2})}));
  EXPECT_FALSE(adam.step_in_units({at::ones({3, 3}).t().diagonal().unsqueeze(1)}));
  EXPECT_TRUE(at::equal(p, at::zeros({3})));
}

TEST(FusedAdam, AmsgradTakesLibTorchsPath) {
  // Not fused: the values must be LibTorch's exactly.
  auto gen = at::detail::createCPUGenerator(5);
  const at::Tensor start = at::randn({4}, gen);
  at::Tensor a = start.clone().set_requires_grad(true), b = start.clone().set_requires_grad(true);
  const auto options = torch::optim::AdamOptions(0.1).amsgrad(true);
  FusedAdam fused({a}, options);
  torch::optim::Adam reference({b}, options);
  for (int i = 0; i < 10; ++i) {
    const at::Tensor g = at::randn({4}, gen);
    a.mutable_grad() = g.clone();
    b.mutable_grad() = g.clone();
    fused.step();
    reference.step();
  }
  EXPECT_TRUE(at::equal(a, b));
  EXPECT_FALSE(at::equal(a, start));
}

}  // namespace
}  // namespace vguide
