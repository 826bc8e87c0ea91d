// spline: rational-quadratic neural spline coupling flow (the seed's
// AutoNeuralSplineGuide), built from the SDK flow kit: num_flows coupling layers
// with alternating half masks, then (our extension) a learnable elementwise affine.
#include "vguide/flow.hpp"
#include "vguide/plugins/spline/options.hpp"
#include "vguide/plugin.hpp"

namespace {
using namespace vguide::flow;

class SplineGuide final : public FlowGuide {
 public:
  SplineGuide(const vguide::Model& model, const std::vector<std::string>& observed, vguide::SplineOptions o,
              uint64_t seed)
      : FlowGuide("spline", vguide::LatentRegistry::from_model(model, observed), seed) {
    o.validate();
    require_dim_at_least_two();
    const int64_t D = latent_dim();
    auto univariate = spline_univariate(o.num_bins(), o.tail_bound());
    std::vector<std::shared_ptr<Transform>> stack;
    for (int64_t k = 0; k < o.num_flows(); ++k)
      stack.push_back(std::make_shared<CouplingTransform>(CouplingTransform::half_mask(D, k % 2 == 0), univariate,
                                                          o.hidden_dim_for(D), o.num_hidden_layers(), generator()));
    if (o.affine()) stack.push_back(std::make_shared<ElementwiseAffine>(D));
    set_transforms(std::move(stack));
  }
};

std::shared_ptr<vguide::Guide> make_spline(const vguide::FactoryArgs& a) {
  return std::make_shared<SplineGuide>(a.model, a.observed_names, vguide::SplineOptions::from(a.options),
                                       a.context.next_seed());
}
}  // namespace

VGUIDE_DECLARE_PLUGIN("spline", "rational-quadratic neural spline coupling flow", vguide::SplineOptions, make_spline)
