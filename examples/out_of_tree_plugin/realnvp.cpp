// realnvp: a guide family written the way a third party writes one, against the
// installed SDK alone (see README.md next to this file). RealNVP (Dinh, Sohl-Dickstein
// and Bengio 2017, "Density estimation using Real NVP"): affine coupling layers whose
// masks alternate between the two halves of the latent vector, then a learnable
// elementwise affine layer, all from the SDK's flow kit.
#include <iterator>

#include "vguide/flow.hpp"
#include "vguide/plugin.hpp"

namespace {
using namespace vguide::flow;

struct RealNvpOptions {
  static constexpr vguide::OptionSpec schema_specs[] = {
      {"num_flows", "int", "4", "affine coupling layers", ">=1"},
      {"hidden_dim", "int", "16", "hidden width of each coupling network", ">=1"},
  };
  static constexpr vguide::OptionSchema schema() { return {schema_specs, std::size(schema_specs)}; }
};

class RealNvpGuide final : public FlowGuide {
 public:
  explicit RealNvpGuide(const vguide::FactoryArgs& a)
      : FlowGuide("realnvp", vguide::LatentRegistry::from_model(a.model, a.observed_names), a.context.next_seed()) {
    require_dim_at_least_two();
    std::vector<std::shared_ptr<Transform>> stack;
    for (int64_t k = 0; k < a.options.get_int("num_flows"); ++k)
      stack.push_back(std::make_shared<CouplingTransform>(CouplingTransform::half_mask(latent_dim(), k % 2 == 0),
                                                          affine_univariate(), a.options.get_int("hidden_dim"), 2,
                                                          generator()));
    stack.push_back(std::make_shared<ElementwiseAffine>(latent_dim()));
    set_transforms(std::move(stack));
  }
};

std::shared_ptr<vguide::Guide> make(const vguide::FactoryArgs& a) { return std::make_shared<RealNvpGuide>(a); }
}  // namespace

VGUIDE_DECLARE_PLUGIN("realnvp", "RealNVP affine coupling flow (the out-of-tree example plugin)", RealNvpOptions, make)
