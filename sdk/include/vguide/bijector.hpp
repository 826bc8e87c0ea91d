#pragma once
/// Bijectors from unconstrained space onto a constraint's support.
///
/// Shapes: a bijector consumes `event_rank()` trailing dims of its unconstrained
/// input (0: elementwise; 1: a vector, e.g. simplex (K-1) -> (K); corr_cholesky
/// (K(K-1)/2) -> (K, K)). Every leading dim is a batch dim and is preserved.
/// `log_abs_det_jacobian` reduces exactly those `event_rank()` dims, like Pyro; the
/// latent registry sums the remaining site dims.
///
/// Example: auto b = vguide::biject_to(vguide::constraints::simplex());
///          auto [v, ladj] = b->forward_and_log_det(torch::zeros({8, 3}));  // v: (8, 4), ladj: (8,)
#include <ATen/core/Tensor.h>

#include <memory>
#include <utility>
#include <vector>

#include "vguide/constraint.hpp"
#include "vguide/export.hpp"

namespace vguide {

class VGUIDE_API Bijector {
 public:
  virtual ~Bijector();

  /// The support this bijector maps onto.
  virtual const Constraint& codomain() const = 0;
  /// Trailing dims of the unconstrained input consumed per application (0, 1).
  virtual int event_rank() const { return 0; }

  virtual at::Tensor forward(const at::Tensor& z) const = 0;
  virtual at::Tensor inverse(const at::Tensor& v) const = 0;
  /// log |det d forward / dz| at z (v = forward(z)), event dims reduced.
  virtual at::Tensor log_abs_det_jacobian(const at::Tensor& z, const at::Tensor& v) const = 0;

  /// Value and log|det J| together: the ELBO needs both.
  virtual std::pair<at::Tensor, at::Tensor> forward_and_log_det(const at::Tensor& z) const;
  /// The point z = inverse(v) and log|det J| of forward at z.
  virtual std::pair<at::Tensor, at::Tensor> inverse_and_log_det(const at::Tensor& v) const;

  /// Shape of the unconstrained parameterisation of a site with `shape`.
  /// @throw std::invalid_argument if `shape` cannot carry this support.
  virtual std::vector<int64_t> unconstrained_shape(const std::vector<int64_t>& shape) const;
  /// Inverse of unconstrained_shape.
  virtual std::vector<int64_t> constrained_shape(const std::vector<int64_t>& unconstrained) const;
};

/// The bijector onto `constraint`'s support (exp for positive, stick-breaking for
/// simplex, tanh + stick-breaking rows for corr_cholesky, ...). See docs/bijectors.md.
VGUIDE_API std::shared_ptr<const Bijector> biject_to(const Constraint& constraint);

}  // namespace vguide
