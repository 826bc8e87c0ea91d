// The plugin loader: each failure is one line naming the file and the cause, the
// manager stays usable afterwards, and a guide keeps its library loaded.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "test_config.hpp"
#include "test_models.hpp"
#include "test_util.hpp"
#include "vguide/guide.hpp"
#include "vguide/runtime/plugin_manager.hpp"

namespace vguide {
namespace {
namespace fs = std::filesystem;

std::string broken(const std::string& kind) {
  return std::string(VGUIDE_TEST_BROKEN_PLUGIN_DIR) + "/libbroken_" + kind + ".so";
}
std::string shipped(const std::string& family) {
  return std::string(VGUIDE_TEST_PLUGIN_DIR) + "/lib" + family + ".so";
}

class PluginManagerTest : public ::testing::Test {
 protected:
  // After every failure the manager must still load and create.
  void ExpectStillUsable() {
    EXPECT_EQ(manager_.load(shipped("normal")), "normal");
    test::SitesModel model({{"mu", {}, constraints::real()}});
    auto guide = manager_.create("normal", model, {}, {});
    EXPECT_EQ(guide->rsample(particles(2)).at("mu").sizes().vec(), (std::vector<int64_t>{2}));
  }
  PluginManager manager_{1};
  test::SitesModel model_{{{"mu", {}, constraints::real()}}};
};

TEST_F(PluginManagerTest, PathThatDoesNotExist) {
  EXPECT_EQ(test::message_of<PluginError>([&] { manager_.load("/nonexistent/libnothing.so"); }),
            "plugin /nonexistent/libnothing.so: no such file");
  ExpectStillUsable();
}

TEST_F(PluginManagerTest, NotASharedLibrary) {
  const fs::path text = fs::temp_directory_path() / "vguide_test_not_a_library.so";
  std::ofstream(text) << "this is text, not ELF\n";
  EXPECT_EQ(test::message_of<PluginError>([&] { manager_.load(text.string()); }),
            "plugin " + text.string() + ": not a shared library (no ELF header)");
  // ELF magic but garbage after it: the ELF check names the first bad field (the
  // class byte is the ' ' after "ELF"), before dlopen sees the file.
  const fs::path fake = fs::temp_directory_path() / "vguide_test_fake_elf.so";
  std::ofstream(fake, std::ios::binary) << "\x7f" << "ELF garbage garbage garbage garbage garbage garbage garbage";
  EXPECT_EQ(test::message_of<PluginError>([&] { manager_.load(fake.string()); }),
            "plugin " + fake.string() + ": corrupt ELF header: class 32 is neither 32- nor 64-bit");
  fs::remove(text);
  fs::remove(fake);
  ExpectStillUsable();
}

TEST_F(PluginManagerTest, NoDescriptor) {
  EXPECT_EQ(test::message_of<PluginError>([&] { manager_.load(broken("no_descriptor")); }),
            "plugin " + broken("no_descriptor") +
                ": no descriptor: it does not export 'vguide_plugin' (not a vguide plugin, or built without "
                "VGUIDE_DECLARE_PLUGIN)");
  ExpectStillUsable();
}

TEST_F(PluginManagerTest, WrongAbiMajor) {
  EXPECT_EQ(test::message_of<PluginError>([&] { manager_.load(broken("abi_major")); }),
            "plugin " + broken("abi_major") +
                ": ABI version 4.0 is incompatible with this host's 3.2 (major versions differ; rebuild the plugin "
                "against this SDK)");
  ExpectStillUsable();
}

TEST_F(PluginManagerTest, NewerAbiMinor) {
  EXPECT_EQ(test::message_of<PluginError>([&] { manager_.load(broken("abi_minor")); }),
            "plugin " + broken("abi_minor") +
                ": ABI version 3.3 is newer than this host's 3.2 (the plugin needs features this host lacks; "
                "upgrade vguide)");
}

TEST_F(PluginManagerTest, NewerSdkVersion) {
  EXPECT_EQ(test::message_of<PluginError>([&] { manager_.load(broken("sdk_newer")); }),
            "plugin " + broken("sdk_newer") + ": built against vguide SDK 99.0.0, newer than this host's " +
                VGUIDE_SDK_VERSION);
  ExpectStillUsable();
}

TEST_F(PluginManagerTest, WrongTorchVersion) {
  EXPECT_EQ(test::message_of<PluginError>([&] { manager_.load(broken("torch_mismatch")); }),
            "plugin " + broken("torch_mismatch") + ": built against LibTorch 0.4.1, but this host uses " +
                TORCH_VERSION + " (LibTorch's C++ ABI differs between minor versions)");
  ExpectStillUsable();
}

TEST_F(PluginManagerTest, ShortDescriptor) {
  const std::string msg = test::message_of<PluginError>([&] { manager_.load(broken("short_struct")); });
  EXPECT_EQ(msg, "plugin " + broken("short_struct") + ": descriptor is " +
                     std::to_string(offsetof(vguide_plugin_descriptor, factory)) + " bytes; this host expects " +
                     std::to_string(sizeof(vguide_plugin_descriptor)) + " to " +
                     std::to_string(sizeof(vguide_plugin_descriptor)));
}

TEST_F(PluginManagerTest, InvalidOptionsSchemaIsRefusedAtLoad) {
  EXPECT_EQ(test::message_of<PluginError>([&] { manager_.load(broken("bad_schema")); }),
            "plugin " + broken("bad_schema") + ": invalid options schema: broken: option spec 'scale': unknown option type 'float'");
}

TEST_F(PluginManagerTest, MalformedVersionIsRefused) {
  EXPECT_EQ(test::message_of<PluginError>([&] { manager_.load(broken("malformed_version")); }),
            "plugin " + broken("malformed_version") + ": malformed SDK version 'latest'");
}

TEST_F(PluginManagerTest, MissingFactory) {
  EXPECT_EQ(test::message_of<PluginError>([&] { manager_.load(broken("no_factory")); }),
            "plugin " + broken("no_factory") + ": descriptor of family 'broken' has no factory");
}

TEST_F(PluginManagerTest, DuplicateFamilyName) {
  manager_.load("normal");  // by name, through the search path
  EXPECT_EQ(test::message_of<PluginError>([&] { manager_.load(broken("duplicate_family")); }),
            "plugin " + broken("duplicate_family") + ": family 'normal' is already registered from " +
                manager_.find("normal").string() + " (duplicate library?)");
  // Loading the same file again is not a duplicate.
  EXPECT_EQ(manager_.load(manager_.find("normal").string()), "normal");
  EXPECT_EQ(manager_.families().size(), 1u);
}

TEST_F(PluginManagerTest, FactoryThrows) {
  EXPECT_EQ(manager_.load(broken("factory_throws")), "throws");
  EXPECT_EQ(test::message_of<PluginError>([&] { manager_.create("throws", model_, {}, {}); }),
            "plugin " + broken("factory_throws") + ": factory of 'throws' failed: deliberate failure in test plugin");
  ExpectStillUsable();
}

TEST_F(PluginManagerTest, HandWrittenFactoryThatLetsAnExceptionThrough) {
  EXPECT_EQ(manager_.load(broken("raw_throw")), "raw_throw");
  EXPECT_EQ(test::message_of<PluginError>([&] { manager_.create("raw_throw", model_, {}, {}); }),
            "plugin " + broken("raw_throw") + ": factory of 'raw_throw' threw: raw factory let an exception through");
  ExpectStillUsable();
}

TEST_F(PluginManagerTest, FactoryReturnsNothing) {
  manager_.load(broken("factory_returns_null"));
  EXPECT_EQ(test::message_of<PluginError>([&] { manager_.create("returns_null", model_, {}, {}); }),
            "plugin " + broken("factory_returns_null") + ": factory of 'returns_null' returned no guide");
}

TEST_F(PluginManagerTest, UnknownFamilyListsTheLoadedOnes) {
  manager_.load("normal");
  manager_.load("delta");
  try {
    manager_.create("iaf", model_, {}, {});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "unknown guide family 'iaf'; loaded families: delta, normal");
  }
}

TEST_F(PluginManagerTest, BadOptionsAreReportedBeforeTheFactoryRuns) {
  manager_.load("normal");
  try {
    manager_.create("normal", model_, {}, {"init_scale=-1"});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(),
                 "normal: bad value for option 'init_scale': -1 is out of range (must be >0); valid options: "
                 "init_scale=0.1");
  }
}

TEST_F(PluginManagerTest, FamiliesListNameDescriptionAndLibrary) {
  manager_.load("normal");
  manager_.load(shipped("delta"));
  auto families = manager_.families();
  ASSERT_EQ(families.size(), 2u);
  EXPECT_EQ(families[0].name, "delta");
  EXPECT_EQ(families[0].description, "MAP point mass; log_prob = 0");
  EXPECT_EQ(families[0].library, shipped("delta"));
  EXPECT_EQ(families[1].name, "normal");
  EXPECT_EQ(families[1].options.size, 1u);
  EXPECT_STREQ(families[1].options.specs[0].name, "init_scale");
}

TEST_F(PluginManagerTest, LookupByNameHonoursVGUIDE_PLUGIN_PATH) {
  ::setenv("VGUIDE_PLUGIN_PATH", VGUIDE_TEST_BROKEN_PLUGIN_DIR, 1);
  EXPECT_EQ(manager_.find("broken_factory_throws").string(), broken("factory_throws"));
  ::unsetenv("VGUIDE_PLUGIN_PATH");
  const std::string msg = test::message_of<PluginError>([&] { manager_.find("nosuchfamily"); });
  EXPECT_EQ(msg.rfind("plugin nosuchfamily: no libnosuchfamily.so in ", 0), 0u) << msg;
  EXPECT_NE(msg.find(VGUIDE_TEST_PLUGIN_DIR), std::string::npos) << msg;
}

TEST(PluginDiscovery, FindsEveryPluginOnceAndAnEarlierFolderShadowsALaterOne) {
  const fs::path dir = fs::temp_directory_path() / ("vguide_discover_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::copy_file(shipped("normal"), dir / "libnormal.so", fs::copy_options::overwrite_existing);
  std::ofstream(dir / "notes.txt") << "not a plugin";
  std::ofstream(dir / "libstale.so.bak") << "not a plugin either";
  ::setenv("VGUIDE_PLUGIN_PATH", dir.c_str(), 1);
  const std::vector<fs::path> found = PluginManager::discover();
  ::unsetenv("VGUIDE_PLUGIN_PATH");
  fs::remove_all(dir);

  // The copy first (VGUIDE_PLUGIN_PATH comes first), then the build's folder without
  // its own libnormal.so, sorted: every shipped family exactly once.
  std::vector<std::string> got;
  for (const auto& p : found) got.push_back(p.string());
  std::vector<std::string> want{(dir / "libnormal.so").string()};
  for (const char* family : {"delta", "iaf", "laplace", "lowrank_mvn", "mixture", "mvn", "spline"})
    want.push_back(shipped(family));
  EXPECT_EQ(got, want);
}

TEST(PluginLifetime, GuideKeepsItsLibraryLoadedAfterTheManagerIsGone) {
  const std::string path = shipped("delta");
  std::shared_ptr<Guide> guide;
  test::SitesModel model({{"mu", {3}, constraints::positive()}});
  {
    PluginManager manager(3);
    manager.load(path);
    guide = manager.create("delta", model, {}, {});
  }
  // The manager is gone; the guide's code is still there and works.
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  EXPECT_NE(handle, nullptr) << "library was unloaded while its guide is alive";
  if (handle) ::dlclose(handle);
  auto draws = guide->rsample(particles(4));
  EXPECT_EQ(draws.at("mu").sizes().vec(), (std::vector<int64_t>{4, 3}));
  std::ostringstream printed;
  guide->pretty_print(printed);
  EXPECT_EQ(printed.str(), "vguide::DeltaGuide(latent_dim=3, init_value=0)");
  guide.reset();
  // Last owner gone: the library goes too.
  handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  EXPECT_EQ(handle, nullptr) << "library stayed loaded after its last guide died";
  if (handle) ::dlclose(handle);
}

TEST(PluginLifetime, AGuideThatEscapesThroughSharedFromThisPinsItsLibrary) {
  const std::string path = shipped("normal");
  std::shared_ptr<torch::nn::Module> escaped;
  {
    PluginManager manager(3);
    manager.load(path);
    test::SitesModel model({{"mu", {}, constraints::real()}});
    auto guide = manager.create("normal", model, {}, {});
    escaped = guide->modules(/*include_self=*/true).front();  // shared_from_this()
  }
  // The handle the manager gave out is gone, but the guide is not: its code must stay.
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  EXPECT_NE(handle, nullptr);
  if (handle) ::dlclose(handle);
  EXPECT_EQ(escaped->named_parameters().size(), 2u);
  escaped.reset();  // destroys the guide; its library code is still mapped
}

TEST(PluginSeeds, EachGuideGetsItsOwnReproducibleStream) {
  test::SitesModel model({{"mu", {4}, constraints::real()}});
  auto draw = [&](uint64_t seed) {
    PluginManager m(seed);
    m.load("normal");
    auto g1 = m.create("normal", model, {}, {});
    auto g2 = m.create("normal", model, {}, {});
    torch::NoGradGuard no_grad;
    return std::make_pair(g1->rsample(particles(3)).at("mu"), g2->rsample(particles(3)).at("mu"));
  };
  auto [a1, a2] = draw(11);
  auto [b1, b2] = draw(11);
  auto [c1, c2] = draw(12);
  EXPECT_TRUE(torch::equal(a1, b1));
  EXPECT_TRUE(torch::equal(a2, b2));
  EXPECT_FALSE(torch::equal(a1, a2));
  EXPECT_FALSE(torch::equal(a1, c1));
}

}  // namespace
}  // namespace vguide
