#include "vguide/runtime/pathfinder.hpp"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <cmath>
#include <deque>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "option_checks.hpp"
#include "vguide/guide.hpp"

namespace vguide {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

at::Tensor as_double(const at::Tensor& t) { return t.to(at::kDouble).contiguous(); }

// log p(z) + log|det J(z)| in the flat unconstrained space. A failure inside the
// model (a Cholesky factor of a matrix that is not positive definite) counts as a
// point outside the support: -inf, with the reason kept for the error message.
struct UnconstrainedDensity {
  const Model& model;
  const LatentRegistry& registry;
  at::ScalarType dtype;
  std::string last_failure;

  // Value and gradient at one point (D,); the gradient is undefined when not finite.
  std::pair<double, at::Tensor> value_and_grad(const at::Tensor& z) {
    try {
      at::AutoGradMode enable_grad(true);
      at::Tensor point = z.to(dtype).unsqueeze(0).detach().requires_grad_(true);
      auto [values, ladj] = registry.constrain(point);
      at::Tensor lp = (model.log_joint(particles(1, dtype), values) + ladj).sum();
      const double value = lp.item<double>();
      if (!std::isfinite(value)) {
        last_failure = "the log density is " + std::to_string(value);
        return {-kInf, at::Tensor()};
      }
      at::Tensor grad = as_double(torch::autograd::grad({lp}, {point})[0][0]);
      if (!at::isfinite(grad).all().item<bool>()) {
        last_failure = "the gradient is not finite";
        return {-kInf, at::Tensor()};
      }
      return {value, grad};
    } catch (const std::exception& e) {
      const std::string why = e.what();
      last_failure = why.substr(0, why.find('\n'));
      return {-kInf, at::Tensor()};
    }
  }

  // The Hessian of log p at z (D, D) by differentiating the gradient's graph, one row
  // per backward pass; undefined where anything is not finite. Exact to rounding:
  // differences of gradients lose the small eigenvalues of a badly conditioned
  // posterior (a ridge with correlation -0.99999).
  at::Tensor hessian(const at::Tensor& z) {
    const int64_t D = z.size(0);
    try {
      at::AutoGradMode enable_grad(true);
      at::Tensor point = z.to(dtype).unsqueeze(0).detach().requires_grad_(true);
      auto [values, ladj] = registry.constrain(point);
      at::Tensor lp = (model.log_joint(particles(1, dtype), values) + ladj).sum();
      at::Tensor grad = torch::autograd::grad({lp}, {point}, {}, /*retain_graph=*/true, /*create_graph=*/true)[0][0];
      at::Tensor H = at::empty({D, D}, at::kDouble);
      for (int64_t i = 0; i < D; ++i) {
        const at::Tensor row = torch::autograd::grad({grad[i]}, {point}, {}, /*retain_graph=*/true,
                                                     /*create_graph=*/false, /*allow_unused=*/true)[0];
        if (!row.defined()) H[i].zero_();
        else H[i].copy_(row[0]);
      }
      if (!at::isfinite(H).all().item<bool>()) return {};
      return 0.5 * (H + H.t());
    } catch (const std::exception& e) {
      const std::string why = e.what();
      last_failure = why.substr(0, why.find('\n'));
      return {};
    }
  }

  // Values at S points (S, D), -inf where not finite.
  at::Tensor values(const at::Tensor& z) {
    const int64_t S = z.size(0);
    try {
      at::NoGradGuard no_grad;
      auto [values, ladj] = registry.constrain(z.to(dtype));
      at::Tensor lp = as_double(model.log_joint(particles(S, dtype), values) + ladj);
      return at::where(at::isfinite(lp), lp, at::full_like(lp, -kInf));
    } catch (const std::exception&) {
      return at::full({S}, -kInf, at::kDouble);
    }
  }
};

struct Pair {
  at::Tensor s, y;  // step and change of the negative log density's gradient
};

// H = γ I with the BFGS inverse updates of every pair, oldest first.
at::Tensor inverse_hessian(const std::deque<Pair>& pairs, int64_t D) {
  const Pair& last = pairs.back();
  const double gamma = at::dot(last.s, last.y).item<double>() / at::dot(last.y, last.y).item<double>();
  at::Tensor H = at::eye(D, at::kDouble) * gamma;
  for (const auto& [s, y] : pairs) {
    const double rho = 1.0 / at::dot(y, s).item<double>();
    const at::Tensor Hy = at::mv(H, y);
    const double yHy = at::dot(y, Hy).item<double>();
    H = H - rho * (at::outer(s, Hy) + at::outer(Hy, s)) + (rho * rho * yHy + rho) * at::outer(s, s);
  }
  return 0.5 * (H + H.t());
}

// H v by the two-loop recursion, for columns v of V (D, k): no D × D matrix.
at::Tensor apply_inverse_hessian(const std::deque<Pair>& pairs, at::Tensor V) {
  std::vector<at::Tensor> alpha;
  for (auto it = pairs.rbegin(); it != pairs.rend(); ++it) {
    const double rho = 1.0 / at::dot(it->y, it->s).item<double>();
    at::Tensor a = rho * at::matmul(it->s.unsqueeze(0), V);  // (1, k)
    V = V - at::matmul(it->y.unsqueeze(1), a);
    alpha.push_back(a);
  }
  const Pair& last = pairs.back();
  V = V * (at::dot(last.s, last.y).item<double>() / at::dot(last.y, last.y).item<double>());
  size_t k = alpha.size();
  for (const auto& [s, y] : pairs) {
    const double rho = 1.0 / at::dot(y, s).item<double>();
    at::Tensor b = rho * at::matmul(y.unsqueeze(0), V);
    V = V + at::matmul(s.unsqueeze(1), alpha[--k] - b);
  }
  return V;
}

// diag(H) from the compact form of the L-BFGS inverse Hessian (Byrd, Nocedal &
// Schnabel 1994): H = γI + W M Wᵀ with W = [S, γY] (D, 2m) and
// M = [[R⁻ᵀ(Dg + γ YᵀY)R⁻¹, -R⁻ᵀ], [-R⁻¹, 0]], R the upper triangle of SᵀY and Dg its
// diagonal. O(m² D): no D × D matrix.
at::Tensor inverse_hessian_diagonal(const std::deque<Pair>& pairs) {
  const int64_t m = static_cast<int64_t>(pairs.size());
  std::vector<at::Tensor> ss, ys;
  for (const auto& [s, y] : pairs) {
    ss.push_back(s);
    ys.push_back(y);
  }
  const at::Tensor S = at::stack(ss, 1), Y = at::stack(ys, 1);  // (D, m)
  const Pair& last = pairs.back();
  const double gamma = at::dot(last.s, last.y).item<double>() / at::dot(last.y, last.y).item<double>();
  const at::Tensor SY = at::matmul(S.t(), Y);
  const at::Tensor R = at::triu(SY);
  const at::Tensor Rinv = at::linalg_solve_triangular(R, at::eye(m, at::kDouble), /*upper=*/true);
  const at::Tensor top_left = at::matmul(at::matmul(Rinv.t(), at::diag(SY.diagonal()) + gamma * at::matmul(Y.t(), Y)), Rinv);
  const at::Tensor M = at::cat({at::cat({top_left, -Rinv.t()}, 1), at::cat({-Rinv, at::zeros({m, m}, at::kDouble)}, 1)}, 0);
  const at::Tensor W = at::cat({S, gamma * Y}, 1);  // (D, 2m)
  return gamma + (at::matmul(W, M) * W).sum(1);
}

struct Approximation {
  at::Tensor location, scale;
  double elbo = -kInf;
};

// The Gaussian at path point x (gradient of log p: grad) and its ELBO estimate.
Approximation approximate(UnconstrainedDensity& density, const std::deque<Pair>& pairs, const at::Tensor& x,
                          const at::Tensor& grad, bool dense, int64_t draws, at::Generator& gen) {
  const int64_t D = x.size(0);
  Approximation a;
  at::Tensor eps = at::randn({draws, D}, gen, at::kDouble);
  at::Tensor z, half_log_det;
  if (dense) {
    const at::Tensor H = inverse_hessian(pairs, D);
    auto [L, info] = at::linalg_cholesky_ex(H);
    if (info.item<int64_t>() != 0) return a;
    a.location = x + at::mv(H, grad);
    a.scale = L;
    z = a.location + at::matmul(eps, L.t());
    half_log_det = at::log(L.diagonal()).sum();
  } else {
    const at::Tensor variance = inverse_hessian_diagonal(pairs);
    if (!(variance > 0).all().item<bool>()) return a;
    a.location = x + apply_inverse_hessian(pairs, grad.unsqueeze(1)).squeeze(1);
    a.scale = variance.sqrt();
    z = a.location + eps * a.scale;
    half_log_det = at::log(a.scale).sum();
  }
  if (!at::isfinite(a.location).all().item<bool>()) return a;
  const at::Tensor log_q = -0.5 * eps.square().sum(1) - half_log_det - 0.5 * D * std::log(2.0 * M_PI);
  a.elbo = (density.values(z) - log_q).mean().item<double>();
  if (!std::isfinite(a.elbo)) a.elbo = -kInf;
  return a;
}

// The Laplace approximation at x: N(x + P⁻¹∇, P⁻¹) with P the negative Hessian of
// log p after Newton steps from x (D backward passes each). The L-BFGS memory holds a few directions only; on a
// ridge (a regression on a predictor near 2000: correlation -0.99999) its H can be
// hundreds of times too narrow and its gradient test stops short of the mode; the
// Newton step from x and the exact curvature fix both, and the ELBO decides.
Approximation laplace(UnconstrainedDensity& density, at::Tensor x, at::Tensor grad, double value, int64_t draws,
                      at::Generator& gen) {
  const int64_t D = x.size(0);
  Approximation a;
  // Damped Newton steps to the mode (an Armijo backtracking on the Newton direction:
  // along a ridge the coupling with the noise scale makes a full step overshoot).
  for (int newton = 0; newton < 50; ++newton) {
    const at::Tensor hessian = density.hessian(x);
    if (!hessian.defined()) return a;
    auto [factor, info] = at::linalg_cholesky_ex(-hessian);  // P = U Uᵀ
    if (info.item<int64_t>() != 0) return a;
    const at::Tensor direction = at::cholesky_solve(grad.unsqueeze(1), factor, /*upper=*/false).squeeze(1);
    const double decrement = at::dot(grad, direction).item<double>();  // ∇ᵀP⁻¹∇ ≥ 0
    if (!(decrement > 1e-12)) break;
    bool climbed = false;
    for (double step = 1.0; step > 1e-6; step *= 0.5) {
      const auto [next_value, next_grad] = density.value_and_grad(x + step * direction);
      if (next_grad.defined() && next_value >= value + 1e-4 * step * decrement) {
        x = x + step * direction;
        grad = next_grad;
        value = next_value;
        climbed = true;
        break;
      }
    }
    if (!climbed) break;
  }
  const at::Tensor hessian = density.hessian(x);
  if (!hessian.defined()) return a;
  auto [U, info] = at::linalg_cholesky_ex(-hessian);
  if (info.item<int64_t>() != 0) return a;
  // Covariance P⁻¹ = U⁻ᵀ U⁻¹; its lower factor is chol(P⁻¹).
  const at::Tensor Uinv = at::linalg_solve_triangular(U, at::eye(D, at::kDouble), /*upper=*/false);
  auto [L, info2] = at::linalg_cholesky_ex(at::matmul(Uinv.t(), Uinv));
  if (info2.item<int64_t>() != 0) return a;
  a.location = x;
  a.scale = L;
  const at::Tensor eps = at::randn({draws, D}, gen, at::kDouble);
  const at::Tensor z = a.location + at::matmul(eps, L.t());
  const at::Tensor log_q = -0.5 * eps.square().sum(1) - at::log(L.diagonal()).sum() - 0.5 * D * std::log(2.0 * M_PI);
  a.elbo = (density.values(z) - log_q).mean().item<double>();
  if (!std::isfinite(a.elbo)) a.elbo = -kInf;
  return a;
}

void check(const PathfinderOptions& o) {
  detail::check_at_least("pathfinder", "max_iterations", o.max_iterations, 1);
  detail::check_at_least("pathfinder", "history", o.history, 1);
  detail::check_at_least("pathfinder", "elbo_draws", o.elbo_draws, 1);
  detail::check_at_least("pathfinder", "starts", o.starts, 1);
  detail::check_at_least("pathfinder", "dense_limit", o.dense_limit, 0);
  detail::check_at_least("pathfinder", "laplace_limit", o.laplace_limit, 0);
  detail::check_positive_number("pathfinder", "radius", o.radius);
}

}  // namespace

PathfinderResult pathfinder(const Model& model, const LatentRegistry& registry, const PathfinderOptions& options,
                            at::Generator& generator, at::ScalarType dtype) {
  check(options);
  const int64_t D = registry.total_unconstrained_dim();
  const bool dense = D <= options.dense_limit;
  UnconstrainedDensity density{model, registry, dtype, ""};
  PathfinderResult result;

  // A start where the log density and its gradient are finite (Stan tries 100; an
  // initialisation that fails this often is a model problem worth reporting).
  at::Tensor x, grad;
  double value = -kInf;
  for (result.starts = 1; result.starts <= options.starts; ++result.starts) {
    x = at::rand({D}, generator, at::kDouble) * (2.0 * options.radius) - options.radius;
    std::tie(value, grad) = density.value_and_grad(x);
    if (grad.defined()) break;
  }
  if (!grad.defined())
  {
    std::ostringstream msg;
    msg << "init: none of " << options.starts << " uniform starts in (-" << options.radius << ", " << options.radius
        << ") gave a finite log density and gradient (last: " << density.last_failure << ")";
    throw std::runtime_error(msg.str());
  }
  result.starts = std::min(result.starts, options.starts);

  // The start's own approximation: a unit Gaussian around it.
  Approximation best;
  best.location = x.clone();
  best.scale = dense ? at::eye(D, at::kDouble) : at::ones({D}, at::kDouble);
  best.elbo = -kInf;

  std::deque<Pair> pairs;
  // L-BFGS on f = -log p, with an Armijo backtracking line search; pairs whose
  // curvature y·s is not positive are not kept (H stays positive definite).
  result.stopped = "max_iterations";
  for (int64_t it = 1; it <= options.max_iterations; ++it) {
    const at::Tensor g = -grad;
    at::Tensor direction = pairs.empty() ? -g / std::max(1.0, at::linalg_vector_norm(g).item<double>())
                                         : -apply_inverse_hessian(pairs, g.unsqueeze(1)).squeeze(1);
    double slope = at::dot(g, direction).item<double>();
    if (!(slope < 0.0)) {  // not a descent direction: restart from the gradient
      pairs.clear();
      direction = -g / std::max(1.0, at::linalg_vector_norm(g).item<double>());
      slope = at::dot(g, direction).item<double>();
    }
    double step = 1.0, next_value = -kInf;
    at::Tensor next_x, next_grad;
    bool accepted = false;
    for (int tries = 0; tries < 60; ++tries, step *= 0.5) {
      next_x = x + step * direction;
      std::tie(next_value, next_grad) = density.value_and_grad(next_x);
      if (next_grad.defined() && -next_value <= -value + 1e-4 * step * slope) {
        accepted = true;
        break;
      }
    }
    if (!accepted) {
      result.stopped = "line search";
      break;
    }
    Pair pair{next_x - x, grad - next_grad};  // y = ∇f(next) - ∇f(x) with f = -log p
    const double curvature = at::dot(pair.y, pair.s).item<double>();
    const double change = next_value - value;
    x = next_x;
    grad = next_grad;
    value = next_value;
    result.iterations = it;
    if (curvature > 1e-12 * at::dot(pair.y, pair.y).item<double>()) {
      pairs.push_back(std::move(pair));
      if (static_cast<int64_t>(pairs.size()) > options.history) pairs.pop_front();
    }
    // Along the path: every point, with the full H up to dense_limit, else its diagonal.
    if (!pairs.empty()) {
      Approximation a = approximate(density, pairs, x, grad, dense, options.elbo_draws, generator);
      if (a.elbo > best.elbo) {
        best = a;
        result.point = it;
      }
    }
    // Stan's L-BFGS tolerances (tol_obj, tol_rel_obj, tol_grad, tol_rel_grad). A
    // badly scaled start (sds of 1e-3 beside 30) takes tiny steps until the memory has
    // seen every direction, so a small change only counts once the memory is full (or
    // holds D steps), and a small step alone never stops the path (Stan's tol_param
    // ended it after 3 iterations, 2 sds from the mode, on such a posterior).
    const bool memory_full = static_cast<int64_t>(pairs.size()) >= std::min(options.history, D);
    const double scale = std::max({std::abs(value), std::abs(value - change), 1.0});
    if (at::max(at::abs(grad)).item<double>() < 1e-8) {
      result.stopped = "gradient converged";
      break;
    }
    if (!memory_full) continue;
    const double relative_grad =
        at::dot(grad, apply_inverse_hessian(pairs, grad.unsqueeze(1)).squeeze(1)).item<double>() / scale;
    if (std::abs(relative_grad) < 2.2e-9) {
      result.stopped = "gradient converged";
      break;
    }
    if (std::abs(change) < 1e-12 || std::abs(change) / scale < 2.2e-12) {
      result.stopped = "objective converged";
      break;
    }
  }
  // The Laplace approximation at the end of the path, where D gradients are cheap.
  if (dense && D <= options.laplace_limit && !pairs.empty()) {
    Approximation a = laplace(density, x, grad, value, options.elbo_draws, generator);
    if (a.elbo > best.elbo) {
      best = a;
      result.point = result.iterations;
      result.laplace = true;
    }
  }
  if (best.elbo == -kInf && !pairs.empty()) {
    // No approximation had a finite ELBO (a density that is -inf on part of every
    // Gaussian's mass): start at the end of the path with a small spread.
    best.location = x;
    best.scale = dense ? at::eye(D, at::kDouble) * 0.1 : at::full({D}, 0.1, at::kDouble);
    result.point = result.iterations;
  }
  result.location = best.location;
  result.scale = best.scale;
  result.elbo = best.elbo == -kInf ? std::nan("") : best.elbo;
  return result;
}

}  // namespace vguide
