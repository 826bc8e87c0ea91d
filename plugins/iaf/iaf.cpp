// iaf: inverse autoregressive flow (the seed's AutoIAFGuide), built from the SDK
// flow kit: num_flows affine MADE layers with a reverse permutation between them,
// then (our extension) a learnable elementwise affine layer.
#include "vguide/flow.hpp"
#include "vguide/plugins/iaf/options.hpp"
#include "vguide/plugin.hpp"

namespace {
using namespace vguide::flow;

class IafGuide final : public FlowGuide {
 public:
  IafGuide(const vguide::Model& model, const std::vector<std::string>& observed, vguide::IafOptions o, uint64_t seed)
      : FlowGuide("iaf", vguide::LatentRegistry::from_model(model, observed), seed) {
    o.validate();
    require_dim_at_least_two();
    const int64_t D = latent_dim();
    std::vector<std::shared_ptr<Transform>> stack;
    for (int64_t k = 0; k < o.num_flows(); ++k) {
      if (k > 0) stack.push_back(Permutation::reverse(D));
      stack.push_back(std::make_shared<MaskedAutoregressiveTransform>(D, affine_univariate(), o.hidden_dim_for(D),
                                                                      o.num_hidden_layers(), generator()));
    }
    if (o.affine()) stack.push_back(std::make_shared<ElementwiseAffine>(D));
    set_transforms(std::move(stack));
  }
};

std::shared_ptr<vguide::Guide> make_iaf(const vguide::FactoryArgs& a) {
  return std::make_shared<IafGuide>(a.model, a.observed_names, vguide::IafOptions::from(a.options),
                                    a.context.next_seed());
}
}  // namespace

VGUIDE_DECLARE_PLUGIN("iaf", "inverse autoregressive flow (affine MADE layers, reverse permutations)",
                      vguide::IafOptions, make_iaf)
