// The loader's ELF check (issue 17): a corrupted or truncated plugin file is refused
// with one line before dlopen, in the embedding API, --list-plugins and
// --check-plugin. Each file is a shipped plugin with exactly one thing broken.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "elf_patch.hpp"
#include "host_run.hpp"
#include "test_config.hpp"
#include "test_util.hpp"
#include "vguide/runtime/elf_check.hpp"
#include "vguide/runtime/plugin_manager.hpp"
#include "vguide/version.hpp"

namespace vguide {
namespace {
namespace fs = std::filesystem;
using test::ElfBytes;

const fs::path kNormal = fs::path(VGUIDE_TEST_PLUGIN_DIR) / "libnormal.so";

class PluginElfTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("vguide_plugin_elf_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    elf_ = ElfBytes::read(kNormal);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // The loader's message for `elf` written to `name`.
  std::string refusal(const ElfBytes& elf, const std::string& name, size_t size = SIZE_MAX) {
    const fs::path file = dir_ / name;
    elf.write(file, size);
    PluginManager manager(1);
    return test::message_of<PluginError>([&] { manager.load(file.string()); });
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
  ElfBytes elf_;
};

TEST_F(PluginElfTest, EveryShippedPluginPassesTheCheck) {
  for (const auto& entry : fs::directory_iterator(VGUIDE_TEST_PLUGIN_DIR))
    if (entry.path().extension() == ".so") EXPECT_EQ(elf_problem(entry.path()), "") << entry.path();
}

TEST_F(PluginElfTest, TruncatedFileNamesTheFirstSegmentPastItsEnd) {
  // What an interrupted copy leaves: the first 4096 bytes (dlopen of it dies of SIGBUS).
  size_t first = 0;
  while (elf_.phdr(first).p_offset + elf_.phdr(first).p_filesz <= 4096) ++first;
  const auto p = elf_.phdr(first);
  EXPECT_EQ(refusal(elf_, "libcut.so", 4096), "plugin " + path("libcut.so") + ": truncated: segment " +
                                                  std::to_string(first) + " ends at byte " +
                                                  std::to_string(p.p_offset + p.p_filesz) + " but the file has 4096 bytes");
}

TEST_F(PluginElfTest, FileCutInsideTheSectionHeaderTable) {
  const size_t size = elf_.bytes.size() - 1;
  EXPECT_EQ(refusal(elf_, "libcut.so", size), "plugin " + path("libcut.so") +
                                                  ": truncated: the section header table ends at byte " +
                                                  std::to_string(elf_.bytes.size()) + " but the file has " +
                                                  std::to_string(size) + " bytes");
}

TEST_F(PluginElfTest, FileForAnotherMachine) {
  elf_.set<Elf64_Half>(offsetof(Elf64_Ehdr, e_machine), EM_AARCH64);
  EXPECT_EQ(refusal(elf_, "libarm.so"), "plugin " + path("libarm.so") +
                                            ": built for another machine: ELF machine 183 (AArch64); this host is "
                                            "ELF machine 62 (x86-64)");
}

TEST_F(PluginElfTest, ThirtyTwoBitFile) {
  elf_.bytes[EI_CLASS] = ELFCLASS32;
  EXPECT_EQ(refusal(elf_, "lib32.so"), "plugin " + path("lib32.so") +
                                           ": a 32-bit ELF file (ELFCLASS32); this host loads 64-bit shared "
                                           "libraries (ELFCLASS64)");
}

TEST_F(PluginElfTest, Executable) {
  elf_.set<Elf64_Half>(offsetof(Elf64_Ehdr, e_type), ET_EXEC);
  EXPECT_EQ(refusal(elf_, "libexec.so"), "plugin " + path("libexec.so") +
                                             ": not a shared library: an executable (ET_EXEC); plugins are shared "
                                             "objects (ET_DYN)");
}

TEST_F(PluginElfTest, NoDynamicSegment) {
  elf_.set<Elf64_Word>(elf_.phdr_offset(elf_.phdr_index(PT_DYNAMIC)) + offsetof(Elf64_Phdr, p_type), PT_NULL);
  EXPECT_EQ(refusal(elf_, "libnodyn.so"),
            "plugin " + path("libnodyn.so") + ": not a shared library: no dynamic segment (PT_DYNAMIC)");
}

TEST_F(PluginElfTest, SegmentSizeThatWrapsAroundIsNotAddedBlindly) {
  // A segment that does not start at byte 0, so that offset + size overflows.
  size_t i = 0;
  while (elf_.phdr(i).p_type != PT_LOAD || elf_.phdr(i).p_offset == 0) ++i;
  elf_.set<Elf64_Xword>(elf_.phdr_offset(i) + offsetof(Elf64_Phdr, p_filesz), ~Elf64_Xword{0});
  EXPECT_EQ(refusal(elf_, "libwrap.so"), "plugin " + path("libwrap.so") + ": corrupt: segment " + std::to_string(i) +
                                             " has offset " + std::to_string(elf_.phdr(i).p_offset) +
                                             " and size 18446744073709551615, past any file");
}

TEST_F(PluginElfTest, DynamicEntryMovedOffItsSection) {
  // DT_STRTAB one byte off: dlopen would read every name from the wrong place.
  const auto dyn = elf_.phdr(elf_.phdr_index(PT_DYNAMIC));
  uint64_t at = dyn.p_offset;
  while (elf_.get<Elf64_Dyn>(at).d_tag != DT_STRTAB) at += sizeof(Elf64_Dyn);
  const uint64_t moved = elf_.get<Elf64_Dyn>(at).d_un.d_ptr + 1;
  elf_.set<Elf64_Addr>(at + offsetof(Elf64_Dyn, d_un), moved);
  char hex[32];
  std::snprintf(hex, sizeof hex, "0x%llx", static_cast<unsigned long long>(moved));
  EXPECT_EQ(refusal(elf_, "libstrtab.so"), "plugin " + path("libstrtab.so") + ": corrupt dynamic section: DT_STRTAB " +
                                               hex + " is not the start of a section of its kind");
}

TEST_F(PluginElfTest, DescriptorOptionCountBeyondTheLibrary) {
  // num_options is stored in the file as is (the pointers are relocated at load).
  const uint64_t d = elf_.file_offset(elf_.descriptor_address());
  elf_.set<uint32_t>(d + offsetof(vguide_plugin_descriptor, num_options), 0x10000000u);
  EXPECT_EQ(refusal(elf_, "libopts.so"), "plugin " + path("libopts.so") +
                                             ": descriptor's option table (268435456 entries) lies outside the library");
}

TEST_F(PluginElfTest, ListPluginsListsATruncatedCopyAsBrokenAndLoadsTheRest) {
  for (const char* good : {"libnormal.so", "libdelta.so"}) fs::copy_file(fs::path(VGUIDE_TEST_PLUGIN_DIR) / good, dir_ / good);
  elf_.write(dir_ / "libcut.so", 4096);
  ::setenv("VGUIDE_PLUGIN_PATH", dir_.c_str(), 1);
  const test::HostRun r = test::run_host("--list-plugins");
  ::unsetenv("VGUIDE_PLUGIN_PATH");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string cut = path("libcut.so");
  const size_t line = r.output.find("broken\ttruncated: segment ");
  ASSERT_NE(line, std::string::npos) << r.output;
  const std::string broken = r.output.substr(line, r.output.find('\n', line) - line);
  EXPECT_NE(broken.find(" but the file has 4096 bytes\t" + cut), std::string::npos) << broken;
  EXPECT_EQ(broken.substr(broken.size() - cut.size()), cut) << broken;
  EXPECT_EQ(r.output.find("skipped"), std::string::npos) << r.output;  // listed once, on stdout
  EXPECT_NE(r.output.find("normal\tmean-field Normal in unconstrained space\t" + path("libnormal.so") + "\n"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("delta\t"), std::string::npos) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 10) << r.output;  // 8 families, the broken file, the folders
}

TEST_F(PluginElfTest, CheckPluginReportsTheDescriptorOfAGoodPlugin) {
  const test::HostRun r = test::run_host("--check-plugin " + kNormal.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const std::string line :
       {"plugin " + kNormal.string() + "\n", std::string("family: normal\n"),
        std::string("description: mean-field Normal in unconstrained space\n"), std::string("SDK version: " VGUIDE_SDK_VERSION "\n"),
        "ABI version: " + std::to_string(VGUIDE_ABI_MAJOR) + "." + std::to_string(VGUIDE_ABI_MINOR) + "\n", std::string("LibTorch: 1.13"), std::string("init_scale"),
        std::string("factory: built a guide on a 3-dimensional test model (6 parameters)\n")})
    EXPECT_NE(r.output.find(line), std::string::npos) << line << "\n" << r.output;
}

TEST_F(PluginElfTest, CheckPluginRefusesATruncatedFileInOneLine) {
  elf_.write(dir_ / "libcut.so", 4096);
  const test::HostRun r = test::run_host("--check-plugin " + path("libcut.so"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_EQ(r.output.rfind("vguide-host: error: plugin " + path("libcut.so") + ": truncated: segment ", 0), 0u)
      << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
}

TEST_F(PluginElfTest, CheckPluginReportsAFactoryThatAborts) {
  const std::string file = std::string(VGUIDE_TEST_BROKEN_PLUGIN_DIR) + "/libbroken_factory_aborts.so";
  const test::HostRun r = test::run_host("--check-plugin " + file);
  EXPECT_EQ(r.exit_code, 7) << r.output;
  EXPECT_EQ(r.output, "vguide-host: error: plugin " + file +
                          ": the check process was killed by signal 6 (SIGABRT) while building a guide with default "
                          "options\n");
}

}  // namespace
}  // namespace vguide
