#pragma once
/// The plugin contract. A plugin is a MODULE library that exports one symbol,
/// `vguide_plugin` (a Boost.DLL alias), pointing at a C-layout descriptor. The host
/// reads the descriptor before it calls anything: struct_size, ABI version, SDK and
/// LibTorch versions, family, options schema, factory. See docs/plugins.md.
///
/// Example (a whole plugin's export):
///   std::shared_ptr<vguide::Guide> make(const vguide::FactoryArgs& args) { ... }
///   VGUIDE_DECLARE_PLUGIN("normal", "mean-field Normal", vguide::NormalOptions, make)
#include <boost/dll/alias.hpp>
#include <torch/version.h>

#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "vguide/export.hpp"
#include "vguide/options.hpp"
#include "vguide/version.hpp"

namespace vguide {
class Guide;
class Model;
class FactoryContext;

/// Everything a factory receives.
struct FactoryArgs {
  const Model& model;
  const std::vector<std::string>& observed_names;
  const Options& options;
  FactoryContext& context;
};

/// A registered guide family, for listings and messages.
struct FamilyInfo {
  std::string name;
  std::string description;
  std::string library;  ///< path of the library it came from ("(built in)" for in-process)
  std::string sdk_version;
  OptionSchema options;
};

/// Lets a guide build other guides by family name (the mixture does) and seeds
/// each guide's generator.
class VGUIDE_API FactoryContext {
 public:
  virtual ~FactoryContext();
  /// @throw std::invalid_argument for an unknown family (the message lists the loaded ones).
  virtual std::shared_ptr<Guide> create(const std::string& family, const Model& model,
                                        const std::vector<std::string>& observed_names,
                                        const std::vector<std::string>& options) = 0;
  virtual std::vector<FamilyInfo> families() const = 0;
  /// Seed for the next guide's generator: distinct per guide, reproducible per run.
  virtual uint64_t next_seed() = 0;
};

using GuideFactory = std::shared_ptr<Guide> (*)(const FactoryArgs& args);
}  // namespace vguide

extern "C" {
/// Returns 0 and sets *out on success; non-zero with a message in `error` otherwise.
/// Never throws: VGUIDE_DECLARE_PLUGIN wraps the family's factory.
typedef int (*vguide_factory_fn)(const vguide::FactoryArgs* args, std::shared_ptr<vguide::Guide>* out,
                                 char* error, uint32_t error_size);

/// Layout is append-only within an ABI major version; `struct_size` tells the host
/// how much of it a plugin knows.
struct vguide_plugin_descriptor {
  uint32_t struct_size;
  uint32_t abi_version;       ///< VGUIDE_MAKE_ABI_VERSION(major, minor)
  const char* sdk_version;    ///< VGUIDE_SDK_VERSION at plugin build time
  const char* torch_version;  ///< TORCH_VERSION at plugin build time
  const char* family;         ///< unique family name, e.g. "normal"
  const char* description;    ///< one line
  const vguide_option_spec* options;
  uint32_t num_options;
  vguide_factory_fn factory;
};
}

#define VGUIDE_PLUGIN_SYMBOL "vguide_plugin"

namespace vguide::detail {
inline int call_factory(GuideFactory factory, const FactoryArgs* args, std::shared_ptr<Guide>* out, char* error,
                        uint32_t error_size) noexcept {
  auto report = [&](const char* what) {
    if (error != nullptr && error_size > 0) {
      std::strncpy(error, what, error_size - 1);
      error[error_size - 1] = '\0';
    }
    return 1;
  };
  try {
    *out = factory(*args);
    return 0;
  } catch (const std::exception& e) {
    return report(e.what());
  } catch (...) {
    return report("unknown exception");
  }
}
}  // namespace vguide::detail

/// Declares this library's descriptor. FAMILY and DESCRIPTION are string literals,
/// OPTIONS a type with `static constexpr vguide::OptionSchema schema()`, FACTORY a
/// vguide::GuideFactory. The version fields are filled in here, at plugin build time.
#define VGUIDE_DECLARE_PLUGIN(FAMILY, DESCRIPTION, OPTIONS, FACTORY)                                       \
  namespace {                                                                                            \
  int vguide_plugin_factory_(const vguide::FactoryArgs* args, std::shared_ptr<vguide::Guide>* out,       \
                             char* error, uint32_t error_size) {                                         \
    return vguide::detail::call_factory(FACTORY, args, out, error, error_size);                          \
  }                                                                                                      \
  const vguide_plugin_descriptor vguide_plugin_descriptor_ = {                                           \
      sizeof(vguide_plugin_descriptor), VGUIDE_ABI_VERSION, VGUIDE_SDK_VERSION, TORCH_VERSION, FAMILY,   \
      DESCRIPTION, OPTIONS::schema().specs, static_cast<uint32_t>(OPTIONS::schema().size),              \
      &vguide_plugin_factory_};                                                                          \
  }                                                                                                      \
  BOOST_DLL_ALIAS(vguide_plugin_descriptor_, vguide_plugin)
