// The rational-quadratic spline and the univariate maps layers are built from.
#include <ATen/ATen.h>

#include <cmath>

#include "vguide/check.hpp"
#include "vguide/flow/spline.hpp"
#include "vguide/flow/univariate.hpp"

namespace vguide::flow {

UnivariateTransform::~UnivariateTransform() = default;

namespace {
// Knot positions on [-B, B] from unnormalised bin sizes: (..., K + 1), ends exact.
at::Tensor knots(const at::Tensor& unnormalised, double B, double min_bin_size) {
  const int64_t K = unnormalised.size(-1);
  at::Tensor fractions = min_bin_size + (1.0 - min_bin_size * K) * at::softmax(unnormalised, -1);
  at::Tensor interior = 2.0 * B * at::cumsum(fractions, -1).narrow(-1, 0, K - 1) - B;
  at::Tensor end = at::ones_like(fractions.narrow(-1, 0, 1)) * B;
  return at::cat({-end, interior, end}, -1);
}

at::Tensor gather_last(const at::Tensor& t, const at::Tensor& index) { return t.gather(-1, index).squeeze(-1); }
}  // namespace

std::pair<at::Tensor, at::Tensor> rational_quadratic_spline(const at::Tensor& x, const at::Tensor& widths,
                                                            const at::Tensor& heights, const at::Tensor& derivatives,
                                                            double B, bool inverse, SplineConstants constants) {
  const int64_t K = widths.size(-1);
  at::Tensor inside = (x >= -B).logical_and(x <= B);
  at::Tensor xc = x.clamp(-B, B);

  at::Tensor cw = knots(widths, B, constants.min_bin_size);
  at::Tensor ch = knots(heights, B, constants.min_bin_size);
  // Interior slopes; the offset makes zero parameters give slope 1 (the identity).
  const double offset = std::log(std::expm1(1.0 - constants.min_derivative));
  at::Tensor d = constants.min_derivative + at::softplus(derivatives + offset);
  d = at::constant_pad_nd(d, {1, 1}, 1.0);  // slope 1 at ±B: smooth into the tails
  // Parameters broadcast against the points (e.g. one spline for many points).
  std::vector<int64_t> knot_shape = x.sizes().vec();
  knot_shape.push_back(K + 1);
  cw = cw.expand(knot_shape);
  ch = ch.expand(knot_shape);
  d = d.expand(knot_shape);

  // Bin of each point, searched among the knots of the side we start from.
  const at::Tensor& search = inverse ? ch : cw;
  at::Tensor idx = ((xc.unsqueeze(-1) >= search).sum(-1) - 1).clamp(0, K - 1).unsqueeze(-1);
  at::Tensor x_k = gather_last(cw, idx), w_k = gather_last(cw, idx + 1) - x_k;
  at::Tensor y_k = gather_last(ch, idx), h_k = gather_last(ch, idx + 1) - y_k;
  at::Tensor d_k = gather_last(d, idx), d_k1 = gather_last(d, idx + 1);
  at::Tensor s = h_k / w_k;
  at::Tensor curvature = d_k1 + d_k - 2.0 * s;

  at::Tensor xi;
  if (!inverse) {
    xi = (xc - x_k) / w_k;
  } else {
    // Solve a ξ² + b ξ + c = 0 for the ξ in [0, 1], in the stable form 2c / (-b - √disc).
    at::Tensor dy = xc - y_k;
    at::Tensor a = h_k * (s - d_k) + dy * curvature;
    at::Tensor b = h_k * d_k - dy * curvature;
    at::Tensor c = -s * dy;
    at::Tensor disc = (b * b - 4.0 * a * c).clamp_min(0.0);
    xi = (2.0 * c) / (-b - at::sqrt(disc));
  }
  at::Tensor t = xi * (1.0 - xi);
  at::Tensor denom = s + curvature * t;
  at::Tensor slope_num = s * s * (d_k1 * xi * xi + 2.0 * s * t + d_k * (1.0 - xi) * (1.0 - xi));
  at::Tensor log_slope = at::log(slope_num) - 2.0 * at::log(denom);

  at::Tensor out, ladj;
  if (!inverse) {
    out = y_k + h_k * (s * xi * xi + d_k * t) / denom;
    ladj = log_slope;
  } else {
    out = x_k + xi * w_k;
    ladj = -log_slope;
  }
  return {at::where(inside, out, x), at::where(inside, ladj, at::zeros_like(ladj))};
}

namespace {
class AffineUnivariate final : public UnivariateTransform {
 public:
  AffineUnivariate(double lo, double hi) : lo_(lo), hi_(hi) {}
  int64_t num_params() const override { return 2; }
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& x, const at::Tensor& params) const override {
    at::Tensor log_scale = params.select(-1, 1).clamp(lo_, hi_);
    return {params.select(-1, 0) + at::exp(log_scale) * x, log_scale};
  }
  std::pair<at::Tensor, at::Tensor> inverse(const at::Tensor& y, const at::Tensor& params) const override {
    at::Tensor log_scale = params.select(-1, 1).clamp(lo_, hi_);
    return {(y - params.select(-1, 0)) * at::exp(-log_scale), -log_scale};
  }

 private:
  double lo_, hi_;
};

class SplineUnivariate final : public UnivariateTransform {
 public:
  SplineUnivariate(int64_t bins, double bound) : bins_(bins), bound_(bound) {}
  int64_t num_params() const override { return 3 * bins_ - 1; }
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& x, const at::Tensor& params) const override {
    return apply(x, params, false);
  }
  std::pair<at::Tensor, at::Tensor> inverse(const at::Tensor& y, const at::Tensor& params) const override {
    return apply(y, params, true);
  }

 private:
  std::pair<at::Tensor, at::Tensor> apply(const at::Tensor& v, const at::Tensor& params, bool inverse) const {
    return rational_quadratic_spline(v, params.narrow(-1, 0, bins_), params.narrow(-1, bins_, bins_),
                                     params.narrow(-1, 2 * bins_, bins_ - 1), bound_, inverse);
  }
  int64_t bins_;
  double bound_;
};
}  // namespace

std::shared_ptr<const UnivariateTransform> affine_univariate(double log_scale_min, double log_scale_max) {
  return std::make_shared<AffineUnivariate>(log_scale_min, log_scale_max);
}

std::shared_ptr<const UnivariateTransform> spline_univariate(int64_t num_bins, double tail_bound) {
  check_greater_or_equal<int64_t>("spline", "num_bins", num_bins, 2);
  // Every bin is at least min_bin_size of the range, so K * min_bin_size must stay below 1.
  if (static_cast<double>(num_bins) * SplineConstants{}.min_bin_size >= 1.0)
    throw std::domain_error("spline: num_bins is " + std::to_string(num_bins) + ", but must be below " +
                            std::to_string(static_cast<int64_t>(1.0 / SplineConstants{}.min_bin_size)) + "!");
  check_positive("spline", "tail_bound", tail_bound);
  return std::make_shared<SplineUnivariate>(num_bins, tail_bound);
}

}  // namespace vguide::flow
