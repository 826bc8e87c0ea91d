// Deliberately broken plugins for the loader tests: one source, compiled once per
// BROKEN_<KIND> macro, each breaking exactly one rule of the descriptor contract.
#include <cstdlib>
#include <stdexcept>

#include "vguide/plugin.hpp"

namespace {
struct NoOptions {
  static constexpr vguide::OptionSchema schema() { return {}; }
};

[[maybe_unused]] std::shared_ptr<vguide::Guide> throwing_factory(const vguide::FactoryArgs&) {
  throw std::runtime_error("deliberate failure in test plugin");
}
// A plugin whose code faults: only a separate process survives it (--check-plugin).
[[maybe_unused]] std::shared_ptr<vguide::Guide> aborting_factory(const vguide::FactoryArgs&) { std::abort(); }
[[maybe_unused]] std::shared_ptr<vguide::Guide> null_factory(const vguide::FactoryArgs&) { return nullptr; }

// A factory that breaks the "never throw" rule of vguide_factory_fn on purpose.
[[maybe_unused]] int raw_throwing_factory(const vguide::FactoryArgs*, std::shared_ptr<vguide::Guide>*, char*, uint32_t) {
  throw std::runtime_error("raw factory let an exception through");
}

[[maybe_unused]] int unused_factory(const vguide::FactoryArgs*, std::shared_ptr<vguide::Guide>*, char*, uint32_t) { return 1; }

[[maybe_unused]] vguide_plugin_descriptor make(const char* family) {
  return {sizeof(vguide_plugin_descriptor), VGUIDE_ABI_VERSION, VGUIDE_SDK_VERSION, TORCH_VERSION, family,
          "a broken plugin for tests", nullptr, 0, &unused_factory};
}
}  // namespace

#if defined(BROKEN_NO_DESCRIPTOR)
extern "C" __attribute__((visibility("default"))) int vguide_not_a_descriptor() { return 42; }
#elif defined(BROKEN_FACTORY_THROWS)
VGUIDE_DECLARE_PLUGIN("throws", "factory always throws", NoOptions, throwing_factory)
#elif defined(BROKEN_FACTORY_ABORTS)
VGUIDE_DECLARE_PLUGIN("aborts", "factory calls abort()", NoOptions, aborting_factory)
#elif defined(BROKEN_FACTORY_RETURNS_NULL)
VGUIDE_DECLARE_PLUGIN("returns_null", "factory returns nullptr", NoOptions, null_factory)
#else
namespace {
vguide_plugin_descriptor broken() {
  vguide_plugin_descriptor d = make("broken");
#if defined(BROKEN_ABI_MAJOR)
  d.abi_version = VGUIDE_MAKE_ABI_VERSION(VGUIDE_ABI_MAJOR + 1, 0);
#elif defined(BROKEN_ABI_MINOR)
  d.abi_version = VGUIDE_MAKE_ABI_VERSION(VGUIDE_ABI_MAJOR, VGUIDE_ABI_MINOR + 1);
#elif defined(BROKEN_SDK_NEWER)
  d.sdk_version = "99.0.0";
#elif defined(BROKEN_TORCH_MISMATCH)
  d.torch_version = "0.4.1";
#elif defined(BROKEN_SHORT_STRUCT)
  d.struct_size = offsetof(vguide_plugin_descriptor, factory);
#elif defined(BROKEN_NO_FACTORY)
  d.factory = nullptr;
#elif defined(BROKEN_DUPLICATE_FAMILY)
  d.family = "normal";
#elif defined(BROKEN_BAD_SCHEMA)
  static constexpr vguide_option_spec specs[] = {{"scale", "float", "1", "a type the host does not know", ""}};
  d.options = specs;
  d.num_options = 1;
#elif defined(BROKEN_MALFORMED_VERSION)
  d.sdk_version = "latest";
#elif defined(BROKEN_RAW_THROW)
  d.family = "raw_throw";
  d.factory = &raw_throwing_factory;
#endif
  return d;
}
const vguide_plugin_descriptor descriptor = broken();
}  // namespace
BOOST_DLL_ALIAS(descriptor, vguide_plugin)
#endif
