#include "vguide/runtime/plugin_manager.hpp"

#include <dlfcn.h>
#include <link.h>

#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <set>
#include <sstream>

#include "vguide/guide.hpp"
#include "vguide/options.hpp"
#include "vguide/runtime/elf_check.hpp"
#include "vguide_paths.hpp"

namespace vguide {
namespace fs = std::filesystem;

struct PluginManager::Entry {
  vguide_plugin_descriptor descriptor{};
  std::shared_ptr<void> library;  // boost::dll::shared_library, null for built-ins
  std::string origin;
};

namespace {

// The smallest descriptor this host can use: every field up to the factory.
constexpr std::size_t kMinDescriptorSize = offsetof(vguide_plugin_descriptor, factory) + sizeof(vguide_factory_fn);

[[noreturn]] void fail(const std::string& origin, const std::string& cause) {
  throw PluginError("plugin " + origin + ": " + cause);
}

std::string major_minor(const std::string& version) {
  const auto first = version.find('.');
  if (first == std::string::npos) return version;
  const auto second = version.find('.', first + 1);
  return version.substr(0, second);
}

// Numeric compare of dotted versions: <0, 0, >0.
int compare_versions(const std::string& a, const std::string& b) {
  std::istringstream sa(a), sb(b);
  for (int i = 0; i < 3; ++i) {
    long x = 0, y = 0;
    char dot;
    sa >> x;
    sb >> y;
    if (x != y) return x < y ? -1 : 1;
    sa >> dot;
    sb >> dot;
  }
  return 0;
}

// "1.13.0": digits separated by single dots.
bool is_version(const char* text) {
  bool digit = false;
  for (const char* c = text; *c; ++c) {
    if (*c >= '0' && *c <= '9') digit = true;
    else if (*c == '.' && digit) digit = false;
    else return false;
  }
  return digit;
}

// The address ranges a loaded library occupies (its PT_LOAD segments), to check the
// descriptor's pointers before following them: a corrupt file's descriptor may point
// anywhere, and a bad pointer would fault in the host.
class Image {
 public:
  explicit Image(void* handle) {
    link_map* map = nullptr;
    if (::dlinfo(handle, RTLD_DI_LINKMAP, &map) != 0 || map == nullptr) return;
    map_ = map;
    ::dl_iterate_phdr(&Image::collect, this);
  }
  bool contains(const void* p, std::size_t n) const {
    const auto a = reinterpret_cast<uintptr_t>(p);
    for (const auto& r : ranges_)
      if (a >= r.begin && a <= r.end && n <= r.end - a) return true;
    return false;
  }
  bool executable(const void* p) const {
    const auto a = reinterpret_cast<uintptr_t>(p);
    for (const auto& r : ranges_)
      if (r.exec && a >= r.begin && a < r.end) return true;
    return false;
  }
  // A NUL-terminated string inside one segment.
  bool string(const char* s) const {
    const auto a = reinterpret_cast<uintptr_t>(s);
    for (const auto& r : ranges_)
      if (a >= r.begin && a < r.end) return std::memchr(s, '\0', r.end - a) != nullptr;
    return false;
  }

 private:
  struct Range {
    uintptr_t begin, end;
    bool exec;
  };
  static int collect(dl_phdr_info* info, std::size_t, void* self) {
    auto* image = static_cast<Image*>(self);
    if (info->dlpi_addr != image->map_->l_addr || std::strcmp(info->dlpi_name, image->map_->l_name) != 0) return 0;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
      const auto& p = info->dlpi_phdr[i];
      if (p.p_type == PT_LOAD && (p.p_flags & PF_R))
        image->ranges_.push_back({info->dlpi_addr + p.p_vaddr, info->dlpi_addr + p.p_vaddr + p.p_memsz, (p.p_flags & PF_X) != 0});
    }
    return 1;
  }
  const link_map* map_ = nullptr;
  std::vector<Range> ranges_;
};

// The descriptor and everything it points to lie in the library (check 7a of
// docs/plugins.md): a flipped byte in the file must not send the host to a wild address.
void check_descriptor_pointers(const vguide_plugin_descriptor* d, const Image& image, const std::string& origin) {
  if (!image.contains(d, sizeof(*d))) fail(origin, "descriptor symbol '" VGUIDE_PLUGIN_SYMBOL "' points outside the library");
  const std::pair<const char*, const char*> strings[] = {
      {"sdk_version", d->sdk_version}, {"torch_version", d->torch_version}, {"family", d->family},
      {"description", d->description}};
  for (const auto& [field, text] : strings)
    if (text != nullptr && !image.string(text))
      fail(origin, std::string("descriptor field '") + field + "' points outside the library");
  if (d->factory != nullptr && !image.executable(reinterpret_cast<const void*>(d->factory)))
    fail(origin, "descriptor field 'factory' points outside the library's code");
  if (d->options == nullptr || d->num_options == 0) return;
  if (!image.contains(d->options, std::size_t{d->num_options} * sizeof(vguide_option_spec)))
    fail(origin, "descriptor's option table (" + std::to_string(d->num_options) + " entries) lies outside the library");
  for (uint32_t i = 0; i < d->num_options; ++i) {
    const auto& o = d->options[i];
    for (const char* text : {o.name, o.type, o.default_value, o.help, o.constraint})
      if (text != nullptr && !image.string(text))
        fail(origin, "option " + std::to_string(i) + " of the descriptor points outside the library");
  }
}

// dlopen's own reason, without Boost's appended errno text.
std::string dlopen_reason(const fs::path& path) {
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle != nullptr) {
    ::dlclose(handle);
    return "the dynamic loader refused it";
  }
  const char* err = ::dlerror();
  std::string reason = err ? err : "unknown dynamic loader error";
  // dlerror repeats the path first; keep only the cause.
  const std::string prefix = path.string() + ": ";
  if (reason.rfind(prefix, 0) == 0) reason = reason.substr(prefix.size());
  return reason;
}

void check_descriptor(const vguide_plugin_descriptor& d, const std::string& origin) {
  if (d.struct_size < offsetof(vguide_plugin_descriptor, sdk_version))
    fail(origin, "descriptor is " + std::to_string(d.struct_size) + " bytes, too short to carry an ABI version");
  const uint32_t major = abi_major(d.abi_version), minor = abi_minor(d.abi_version);
  const std::string plugin_abi = std::to_string(major) + "." + std::to_string(minor);
  const std::string host_abi = std::to_string(VGUIDE_ABI_MAJOR) + "." + std::to_string(VGUIDE_ABI_MINOR);
  if (major != VGUIDE_ABI_MAJOR)
    fail(origin, "ABI version " + plugin_abi + " is incompatible with this host's " + host_abi +
                     " (major versions differ; rebuild the plugin against this SDK)");
  if (minor > VGUIDE_ABI_MINOR)
    fail(origin, "ABI version " + plugin_abi + " is newer than this host's " + host_abi +
                     " (the plugin needs features this host lacks; upgrade vguide)");
  if (d.struct_size < kMinDescriptorSize || d.struct_size > sizeof(vguide_plugin_descriptor))
    fail(origin, "descriptor is " + std::to_string(d.struct_size) + " bytes; this host expects " +
                     std::to_string(kMinDescriptorSize) + " to " + std::to_string(sizeof(vguide_plugin_descriptor)));
  if (d.sdk_version == nullptr) fail(origin, "descriptor has no SDK version");
  if (d.torch_version == nullptr) fail(origin, "descriptor has no LibTorch version");
  if (d.family == nullptr || *d.family == '\0') fail(origin, "descriptor has no family name");
  if (d.description == nullptr) fail(origin, "descriptor has no description");
  if (d.factory == nullptr) fail(origin, "descriptor of family '" + std::string(d.family) + "' has no factory");
  if (d.num_options > 0 && d.options == nullptr)
    fail(origin, "descriptor declares " + std::to_string(d.num_options) + " options but no option table");
  for (uint32_t i = 0; i < d.num_options; ++i) {
    const auto& o = d.options[i];
    if (!o.name || !*o.name || !o.type || !o.default_value || !o.help)
      fail(origin, "option " + std::to_string(i) + " of family '" + std::string(d.family) + "' has an empty field");
  }
  try {  // every type known, every default valid for its type and constraint
    Options::parse(d.family, OptionSchema{d.options, d.num_options}, {});
  } catch (const std::exception& e) {
    fail(origin, std::string("invalid options schema: ") + e.what());
  }
  if (!is_version(d.sdk_version)) fail(origin, std::string("malformed SDK version '") + d.sdk_version + "'");
  if (!is_version(d.torch_version)) fail(origin, std::string("malformed LibTorch version '") + d.torch_version + "'");
  if (compare_versions(d.sdk_version, VGUIDE_SDK_VERSION) > 0)
    fail(origin, std::string("built against vguide SDK ") + d.sdk_version + ", newer than this host's " +
                     VGUIDE_SDK_VERSION);
  if (major_minor(d.torch_version) != major_minor(TORCH_VERSION))
    fail(origin, std::string("built against LibTorch ") + d.torch_version + ", but this host uses " + TORCH_VERSION +
                     " (LibTorch's C++ ABI differs between minor versions)");
}
}  // namespace

PluginManager::PluginManager(uint64_t seed) : seed_(seed) {}

PluginManager::~PluginManager() = default;

std::vector<fs::path> PluginManager::search_path() {
  std::vector<fs::path> dirs;
  if (const char* env = std::getenv("VGUIDE_PLUGIN_PATH")) {
    std::string all = env, cur;
    std::istringstream in(all);
    while (std::getline(in, cur, ':'))
      if (!cur.empty()) dirs.emplace_back(cur);
  }
  // lib/vguide/plugins next to the libvguide.so this code runs from (an installed
  // copy), then this build's plugin folder, but only for the build tree's own
  // libvguide.so: an installed copy must not pick up plugins from a build tree.
  boost::system::error_code ec;
  const auto self = boost::dll::this_line_location(ec);
  bool in_build_tree = true;
  if (!ec) {
    // Found through an RPATH such as $ORIGIN/../lib: drop the "bin/.." for messages.
    const fs::path self_dir = fs::path(self.parent_path().string()).lexically_normal();
    dirs.push_back(self_dir / "vguide" / "plugins");
    std::error_code same_ec;
    in_build_tree = fs::equivalent(self_dir, VGUIDE_BUILD_LIBRARY_DIR, same_ec);
  }
  if (in_build_tree) dirs.emplace_back(VGUIDE_BUILD_PLUGIN_DIR);
  return dirs;
}

std::vector<fs::path> PluginManager::discover() {
  std::vector<fs::path> found;
  std::set<std::string> names;
  for (const auto& dir : search_path()) {
    std::error_code ec;
    std::vector<fs::path> here;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string file = it->path().filename().string();
      std::error_code file_ec;
      if (file.size() > 6 && file.rfind("lib", 0) == 0 && file.compare(file.size() - 3, 3, ".so") == 0 &&
          fs::is_regular_file(it->path(), file_ec) && names.count(file) == 0)
        here.push_back(it->path());
    }
    std::sort(here.begin(), here.end());  // directory order is arbitrary
    for (auto& path : here) {
      names.insert(path.filename().string());
      found.push_back(std::move(path));
    }
  }
  return found;
}

fs::path PluginManager::find(const std::string& name) const {
  const bool file_name = name.size() > 3 && name.compare(name.size() - 3, 3, ".so") == 0;
  const std::string file = file_name ? name : "lib" + name + ".so";
  std::string searched;
  for (const auto& dir : search_path()) {
    std::error_code ec;
    if (fs::is_regular_file(dir / file, ec)) return dir / file;
    searched += (searched.empty() ? "" : ", ") + dir.string();
  }
  fail(name, "no " + file + " in " + searched + " (set VGUIDE_PLUGIN_PATH or pass a path)");
}

std::string PluginManager::load(const std::string& path_or_name) {
  // A path ("./libiaf.so", "build/plugins/libiaf.so") is taken as given; a bare file
  // name ("libiaf.so") is taken from the working directory if it is there, else
  // searched like a family name; a family name ("iaf") is searched.
  const bool is_path = path_or_name.find('/') != std::string::npos;
  const bool is_file_name = !is_path && path_or_name.size() > 3 &&
                            path_or_name.compare(path_or_name.size() - 3, 3, ".so") == 0;
  std::error_code cwd_ec;
  const fs::path path = is_path || (is_file_name && fs::exists(path_or_name, cwd_ec)) ? fs::path(path_or_name)
                                                                                     : find(path_or_name);
  const std::string origin = path.string();

  std::error_code ec;
  if (!fs::exists(path, ec)) fail(origin, "no such file");
  if (!fs::is_regular_file(path, ec)) fail(origin, "not a regular file");
  const std::string canonical = fs::canonical(path, ec).string();
  if (auto it = loaded_files_.find(canonical); it != loaded_files_.end()) return it->second;
  // dlopen maps and relocates whatever the headers say: check them first.
  if (const std::string why = elf_problem(path); !why.empty()) fail(origin, why);

  // RTLD_NOW: a symbol that cannot be bound is a load error here, not an exit(127)
  // from the dynamic loader when the plugin first calls it.
  auto library = std::make_shared<boost::dll::shared_library>();
  try {
    library->load(boost::dll::fs::path(path.string()), boost::dll::load_mode::rtld_now);
  } catch (const std::exception&) {
    fail(origin, "cannot be loaded: " + dlopen_reason(path));
  }
  if (!library->has(VGUIDE_PLUGIN_SYMBOL))
    fail(origin, "no descriptor: it does not export '" VGUIDE_PLUGIN_SYMBOL
                 "' (not a vguide plugin, or built without VGUIDE_DECLARE_PLUGIN)");
  // The alias is a pointer variable that points at the descriptor.
  const vguide_plugin_descriptor* d = library->get<const vguide_plugin_descriptor*>(VGUIDE_PLUGIN_SYMBOL);
  if (d == nullptr) fail(origin, "descriptor symbol '" VGUIDE_PLUGIN_SYMBOL "' is null");
  check_descriptor_pointers(d, Image(library->native()), origin);
  const std::string family = add(*d, library, origin);
  loaded_files_[canonical] = family;
  spdlog::debug("loaded guide family '{}' from {}", family, origin);
  return family;
}

std::string PluginManager::register_builtin(const vguide_plugin_descriptor& descriptor) {
  return add(descriptor, nullptr, "(built in)");
}

std::string PluginManager::add(const vguide_plugin_descriptor& d, std::shared_ptr<void> library,
                               const std::string& origin) {
  check_descriptor(d, origin);
  const std::string family = d.family;
  if (auto it = families_.find(family); it != families_.end())
    fail(origin, "family '" + family + "' is already registered from " + it->second->origin +
                     " (duplicate library?)");
  auto entry = std::make_shared<Entry>();
  std::memcpy(&entry->descriptor, &d, d.struct_size);
  entry->library = std::move(library);
  entry->origin = origin;
  families_.emplace(family, std::move(entry));
  return family;
}

bool PluginManager::has_family(const std::string& family) const { return families_.count(family) > 0; }

std::vector<FamilyInfo> PluginManager::families() const {
  std::vector<FamilyInfo> out;
  for (const auto& [name, e] : families_)
    out.push_back({name, e->descriptor.description, e->origin, e->descriptor.sdk_version,
                   OptionSchema{e->descriptor.options, e->descriptor.num_options}});
  return out;
}

OptionSchema PluginManager::options_schema(const std::string& family) const {
  auto it = families_.find(family);
  if (it == families_.end()) {
    std::string loaded;
    for (const auto& [name, e] : families_) loaded += (loaded.empty() ? "" : ", ") + name;
    throw std::invalid_argument("unknown guide family '" + family + "'; loaded families: " +
                                (loaded.empty() ? "(none)" : loaded));
  }
  return {it->second->descriptor.options, it->second->descriptor.num_options};
}

uint64_t PluginManager::next_seed() {
  // splitmix64 of (seed, index): distinct, well-mixed streams per guide.
  uint64_t z = seed_ + 0x9e3779b97f4a7c15ULL * (++created_);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::shared_ptr<Guide> PluginManager::create(const std::string& family, const Model& model,
                                             const std::vector<std::string>& observed_names,
                                             const std::vector<std::string>& options) {
  const OptionSchema schema = options_schema(family);
  const auto entry = families_.at(family);
  const Options parsed = Options::parse(family, schema, options);
  FactoryArgs args{model, observed_names, parsed, *this};

  std::shared_ptr<Guide> made;
  char error[1024] = {};
  int rc = 0;
  try {
    rc = entry->descriptor.factory(&args, &made, error, sizeof(error));
  } catch (const std::exception& e) {  // a hand-written factory that lets one through
    fail(entry->origin, "factory of '" + family + "' threw: " + e.what());
  } catch (...) {
    fail(entry->origin, "factory of '" + family + "' threw an unknown exception");
  }
  if (rc != 0) fail(entry->origin, "factory of '" + family + "' failed: " + std::string(error));
  if (!made) fail(entry->origin, "factory of '" + family + "' returned no guide");

  // The guide's code lives in the library: destroy the guide first, then release
  // the library (members are destroyed in reverse order of declaration).
  struct Holder {
    std::shared_ptr<void> library;
    std::shared_ptr<Guide> guide;
    ~Holder() {
      // Someone still owns the guide through shared_from_this() (torch::nn::Module
      // hands those out): its code must stay mapped, so the library is never unloaded.
      if (guide.use_count() > 1 && library) {
        static auto* pinned = new std::vector<std::shared_ptr<void>>();
        pinned->push_back(library);
      }
    }
  };
  auto holder = std::make_shared<Holder>();  // built in place: a copied Holder would pin
  holder->library = entry->library;
  holder->guide = std::move(made);
  Guide* raw = holder->guide.get();
  return std::shared_ptr<Guide>(std::move(holder), raw);
}

}  // namespace vguide
