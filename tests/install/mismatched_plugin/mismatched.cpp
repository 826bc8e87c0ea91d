// A plugin whose descriptor carries an ABI major (MISMATCHED_ABI_MAJOR) or a LibTorch
// version (MISMATCHED_TORCH_VERSION) other than the headers': what VGUIDE_DECLARE_PLUGIN
// stamps when a plugin is compiled against another SDK or another LibTorch.
#include <torch/version.h>

#include "vguide/version.hpp"

#if defined(MISMATCHED_ABI_MAJOR)
#undef VGUIDE_ABI_MAJOR
#define VGUIDE_ABI_MAJOR MISMATCHED_ABI_MAJOR
#endif
#if defined(MISMATCHED_TORCH_VERSION)
#undef TORCH_VERSION
#define TORCH_VERSION MISMATCHED_TORCH_VERSION
#endif

#include "vguide/plugin.hpp"  // both headers above are include-once: the overrides stay

namespace {
struct NoOptions {
  static constexpr vguide::OptionSchema schema() { return {}; }
};
// Never called: the loader refuses the descriptor first.
std::shared_ptr<vguide::Guide> make(const vguide::FactoryArgs&) { return nullptr; }
}  // namespace

VGUIDE_DECLARE_PLUGIN("mismatched", "stamped with versions the host refuses", NoOptions, make)
