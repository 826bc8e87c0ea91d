#pragma once
/// What a guide needs to know about a model: its sites and its log joint.
///
/// Shapes (docs/architecture.md): `x` only carries the particle count S (its leading dim),
/// device and dtype. `values` maps each latent site to a tensor of shape
/// (S, *site.shape) in constrained space. `log_joint` returns (S,): every prior term
/// once and every observation summed over its data rows.
///
/// Example: class Coin : public vguide::Model { ... };  // see docs/embedding.md
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <vector>

#include "vguide/constraint.hpp"
#include "vguide/export.hpp"

namespace vguide {

/// Site name -> tensor, ordered by name so iteration is deterministic.
using SiteValues = std::map<std::string, at::Tensor>;

struct SiteInfo {
  std::string name;
  /// Shape of one draw of the site (without the particle dim); {} for a scalar.
  std::vector<int64_t> shape;
  Constraint support;
  /// Integer-valued site (Bernoulli, Poisson, ...): cannot be a latent of these guides.
  bool discrete = false;
  /// The site has one value per data row (a local latent inside the data plate).
  bool per_row = false;
};

/// How `Model::prior_values` picks each latent's value from its prior.
enum class PriorInit {
  median,  ///< the median of 15 draws (element-wise), robust for heavy-tailed priors
  mean,    ///< the prior mean where it exists, else the median
  sample,  ///< one draw
};

class VGUIDE_API Model {
 public:
  virtual ~Model();
  /// Every sample site, latent or observed, in program order.
  virtual const std::vector<SiteInfo>& sites() const = 0;
  /// log p(data, values) for each of the S particles: shape (S,).
  virtual at::Tensor log_joint(const at::Tensor& x, const SiteValues& values) const = 0;
  /// A name for messages.
  virtual std::string name() const { return "model"; }

  /// Latent values taken from the prior, for the host's init strategies: each latent
  /// site -> a tensor of shape site.shape in constrained space, sites drawn in program
  /// order, each from its prior given the values already chosen for the earlier ones.
  /// Returns an empty map when the model cannot do it (the default), and the host then
  /// says which strategies remain.
  virtual SiteValues prior_values(PriorInit kind, at::Generator& generator) const;
};

/// Shape as text, "[2, 3]" ("[]" for a scalar), for messages.
VGUIDE_API std::string shape_to_string(const std::vector<int64_t>& shape);

}  // namespace vguide
