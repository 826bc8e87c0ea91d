#pragma once
/// Loads guide plugins and creates guides by family name.
///
/// Every failure is a vguide::PluginError with one line "plugin <file>: <cause>",
/// and the manager stays usable. A guide keeps its library loaded for as long as the
/// guide lives, even after the manager is gone.
///
/// Example: vguide::PluginManager plugins(/*seed=*/42);
///          plugins.load("normal");  // libnormal.so from VGUIDE_PLUGIN_PATH, install or build dir
///          auto guide = plugins.create("normal", model, {"y"}, {"init_scale=0.05"});
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "vguide/export.hpp"
#include "vguide/plugin.hpp"

namespace vguide {

class VGUIDE_API PluginError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class VGUIDE_API PluginManager : public FactoryContext {
 public:
  explicit PluginManager(uint64_t seed = 0);
  ~PluginManager() override;
  PluginManager(const PluginManager&) = delete;
  PluginManager& operator=(const PluginManager&) = delete;

  /// Load by path (anything containing '/'), by file name (`libNAME.so`: from the
  /// working directory if there, else from search_path()) or by family name
  /// (`libNAME.so` on search_path()). Loading the same file twice is a no-op.
  /// @return the family name. @throw PluginError.
  std::string load(const std::string& path_or_name);

  /// Register a descriptor compiled into the application (no library to load).
  /// @throw PluginError as for a loaded descriptor.
  std::string register_builtin(const vguide_plugin_descriptor& descriptor);

  /// `libNAME.so` (or `name` itself if it ends in ".so") in the search_path() folders
  /// ($VGUIDE_PLUGIN_PATH, ':'-separated, first). @throw PluginError listing the folders searched.
  std::filesystem::path find(const std::string& name) const;
  /// $VGUIDE_PLUGIN_PATH, lib/vguide/plugins next to libvguide.so, and (for the
  /// build tree's libvguide.so only) the build's plugin folder.
  static std::vector<std::filesystem::path> search_path();
  /// Every `lib*.so` file in the search_path() folders that `find` would pick for its
  /// name (an earlier folder shadows a later one), in search order, sorted within a
  /// folder. Missing folders are skipped. Nothing is loaded or checked.
  static std::vector<std::filesystem::path> discover();

  bool has_family(const std::string& family) const;
  std::vector<FamilyInfo> families() const override;
  /// Schema of a loaded family. @throw std::invalid_argument for an unknown family.
  OptionSchema options_schema(const std::string& family) const;

  /// Parse `options` against the family's schema and call its factory.
  /// @throw std::invalid_argument for an unknown family or bad options;
  ///        PluginError if the factory fails or returns nothing.
  std::shared_ptr<Guide> create(const std::string& family, const Model& model,
                                const std::vector<std::string>& observed_names,
                                const std::vector<std::string>& options) override;

  uint64_t next_seed() override;
  void set_seed(uint64_t seed) noexcept { seed_ = seed; created_ = 0; }

 private:
  struct Entry;
  std::string add(const vguide_plugin_descriptor& d, std::shared_ptr<void> library, const std::string& origin);

  std::map<std::string, std::shared_ptr<Entry>> families_;
  std::map<std::string, std::string> loaded_files_;  // canonical path -> family
  uint64_t seed_;
  uint64_t created_ = 0;
};

}  // namespace vguide
