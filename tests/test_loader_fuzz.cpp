// Issue 17: corrupted and truncated copies of every shipped plugin, each run through
// the real host code (vguide::host::main) in a forked child. Every run must end with
// exit 0 (the variant still loads and fits) or exit 3 with one line naming the file;
// never by a signal, never hung. VGUIDE_FUZZ_SEED=<n> reruns another (or a failing)
// set of variants; the seed is printed first.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <fcntl.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "cli.hpp"
#include "elf_patch.hpp"
#include "test_config.hpp"
#include "vguide/plugin.hpp"

namespace {
namespace fs = std::filesystem;
using vguide::test::ElfBytes;

constexpr auto kChildTimeLimit = std::chrono::seconds(30);
constexpr size_t kMinVariants = 2000;
constexpr int kJobs = 2;  // children at once: the machine's two cores

struct Variant {
  size_t source;            // index of the shipped plugin it comes from
  std::string plugin;       // that plugin's file name
  std::string description;  // how it was made, to reproduce it
  size_t size;              // bytes written (a truncation is shorter)
  std::vector<std::pair<uint64_t, unsigned char>> xors;  // file offset, value XORed into it
};

// Byte ranges worth corrupting, and offsets worth cutting at, of one plugin.
struct Layout {
  std::vector<std::pair<std::string, std::pair<uint64_t, uint64_t>>> regions;  // name -> [begin, end)
  std::set<uint64_t> boundaries;
};

Layout layout_of(const ElfBytes& elf) {
  Layout l;
  const Elf64_Ehdr eh = elf.header();
  const uint64_t size = elf.bytes.size();
  auto cut = [&](uint64_t at) {
    for (const uint64_t d : {at - 1, at, at + 1})
      if (d > 0 && d < size) l.boundaries.insert(d);
  };
  cut(EI_NIDENT);
  cut(sizeof(Elf64_Ehdr));
  for (size_t i = 0; i <= eh.e_phnum; ++i) cut(eh.e_phoff + i * sizeof(Elf64_Phdr));
  for (size_t i = 0; i < eh.e_phnum; ++i) {
    const Elf64_Phdr p = elf.phdr(i);
    cut(p.p_offset);
    cut(p.p_offset + p.p_filesz);
  }
  const Elf64_Phdr dyn = elf.phdr(elf.phdr_index(PT_DYNAMIC));
  // Exact cuts (no neighbours) at the finer structures: each section's start and end,
  // each section header and each dynamic entry.
  auto cut_at = [&](uint64_t at) {
    if (at > 0 && at < size) l.boundaries.insert(at);
  };
  for (size_t i = 0; i <= eh.e_shnum; ++i) cut_at(eh.e_shoff + i * sizeof(Elf64_Shdr));
  for (size_t i = 1; i < eh.e_shnum; ++i) {
    const Elf64_Shdr s = elf.shdr(i);
    if (s.sh_type == SHT_NOBITS) continue;
    cut_at(s.sh_offset);
    cut_at(s.sh_offset + s.sh_size);
  }
  for (uint64_t at = dyn.p_offset; at < dyn.p_offset + dyn.p_filesz; at += sizeof(Elf64_Dyn)) cut_at(at);
  cut(eh.e_shoff);
  cut(size - 1);
  const uint64_t descriptor = elf.file_offset(elf.descriptor_address());
  const uint64_t alias = elf.file_offset(elf.symbol("vguide_plugin"));
  l.regions = {{"ELF header", {0, sizeof(Elf64_Ehdr)}},
               {"program headers", {eh.e_phoff, eh.e_phoff + eh.e_phnum * sizeof(Elf64_Phdr)}},
               {"dynamic section", {dyn.p_offset, dyn.p_offset + dyn.p_filesz}},
               {"descriptor", {descriptor, descriptor + sizeof(vguide_plugin_descriptor)}},
               {"descriptor alias", {alias, alias + sizeof(void*)}}};
  return l;
}

std::vector<fs::path> shipped_plugins() {
  std::vector<fs::path> plugins;
  for (const auto& e : fs::directory_iterator(VGUIDE_TEST_PLUGIN_DIR))
    if (e.path().extension() == ".so") plugins.push_back(e.path());
  std::sort(plugins.begin(), plugins.end());
  return plugins;
}

std::vector<Variant> make_variants(const std::vector<fs::path>& plugins, const std::vector<ElfBytes>& originals,
                                   uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Variant> out;
  for (size_t source = 0; source < plugins.size(); ++source) {
    const fs::path& path = plugins[source];
    const ElfBytes& elf = originals[source];
    const Layout l = layout_of(elf);
    const std::string name = path.filename().string();
    const uint64_t size = elf.bytes.size();
    for (const uint64_t at : l.boundaries) out.push_back({source, name, "cut at byte " + std::to_string(at), at, {}});
    for (int i = 0; i < 6; ++i) {
      const uint64_t at = std::uniform_int_distribution<uint64_t>(1, size - 1)(rng);
      out.push_back({source, name, "cut at random byte " + std::to_string(at), at, {}});
    }
    // Flips: XOR 1 byte (single) or 2..8 consecutive bytes (multi) with random values.
    const std::map<std::string, int> flips{{"ELF header", 25},       {"program headers", 40}, {"dynamic section", 40},
                                           {"descriptor", 25},       {"descriptor alias", 6}};
    for (const auto& [region, range] : l.regions) {
      for (int i = 0; i < flips.at(region); ++i) {
        const uint64_t len = i % 3 == 2 ? std::uniform_int_distribution<uint64_t>(2, 8)(rng) : 1;
        const uint64_t span = range.second - range.first;
        const uint64_t at = range.first + std::uniform_int_distribution<uint64_t>(0, span - std::min(len, span))(rng);
        Variant v{source, name, "", size, {}};
        std::string bytes;
        for (uint64_t k = 0; k < len && at + k < range.second; ++k) {
          const auto x = static_cast<unsigned char>(std::uniform_int_distribution<int>(1, 255)(rng));
          v.xors.emplace_back(at + k, x);
          bytes += (bytes.empty() ? "" : ",") + std::to_string(x);
        }
        v.description = "xor " + region + " byte " + std::to_string(at - range.first) + " (file byte " +
                        std::to_string(at) + ") with " + bytes;
        out.push_back(std::move(v));
      }
    }
  }
  return out;
}

struct Running {
  pid_t pid = -1;
  int fd = -1;
  size_t index = 0;
  fs::path file, output;
  std::string stderr_text;
  bool eof = false;
  std::chrono::steady_clock::time_point started, deadline;
};

// The child: stderr into the pipe, stdout discarded, the host's code, then _exit
// (no atexit handlers of the test binary).
[[noreturn]] void run_host_child(const std::vector<std::string>& args, int err_fd) {
  ::dup2(err_fd, STDERR_FILENO);
  const int null = ::open("/dev/null", O_WRONLY);
  ::dup2(null, STDOUT_FILENO);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const int code = vguide::host::main(static_cast<int>(args.size()), argv.data());
  std::fflush(nullptr);
  ::_exit(code);
}

// "truncated", "corrupt dynamic section", "cannot be loaded", ...: the cause up to
// its first colon, numbers blurred, so that the summary groups alike refusals.
std::string reason_class(const std::string& cause) {
  std::string c = cause.substr(0, cause.find_first_of(":\n"));
  std::string out;
  for (char ch : c)
    if (!(std::isdigit(static_cast<unsigned char>(ch)) && !out.empty() && out.back() == '#'))
      out += std::isdigit(static_cast<unsigned char>(ch)) ? '#' : ch;
  return out.substr(0, 70);
}

// Memory-backed when there is room (thousands of multi-MB files are written) and
// libraries may be mapped from it (not mounted noexec), else the temporary folder.
fs::path scratch_folder() {
  struct statvfs fs_info {};
  if (::statvfs("/dev/shm", &fs_info) == 0 && ::access("/dev/shm", W_OK) == 0 && !(fs_info.f_flag & ST_NOEXEC) &&
      static_cast<uint64_t>(fs_info.f_bavail) * fs_info.f_frsize > (uint64_t{1} << 30))
    return "/dev/shm";
  return fs::temp_directory_path();
}

// Removes the scratch folder however the test ends (the early returns of a fatal failure too).
struct RemoveOnExit {
  fs::path dir;
  ~RemoveOnExit() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

// Writes the flipped bytes of `xors` into the copy of `original` at `path`, or (patched
// false) the original bytes back.
void patch_file(const fs::path& path, const std::vector<std::pair<uint64_t, unsigned char>>& xors,
                const std::vector<unsigned char>& original, bool patched) {
  const int fd = ::open(path.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0) << path;
  for (const auto& [at, x] : xors) {
    const unsigned char now = patched ? original[at] ^ x : original[at];
    ASSERT_EQ(::pwrite(fd, &now, 1, static_cast<off_t>(at)), 1) << path;
  }
  ::close(fd);
}

TEST(LoaderFuzz, CorruptedPluginsLoadOrAreRefusedInOneLineNeverCrash) {
  std::setvbuf(stdout, nullptr, _IONBF, 0);  // progress as it happens; nothing buffered across fork
  const char* env_seed = std::getenv("VGUIDE_FUZZ_SEED");
  const uint64_t seed = env_seed ? std::strtoull(env_seed, nullptr, 10) : 17;
  std::printf("seed %llu (rerun with VGUIDE_FUZZ_SEED=%llu)\n", static_cast<unsigned long long>(seed),
              static_cast<unsigned long long>(seed));
  const std::vector<fs::path> plugins = shipped_plugins();
  std::vector<ElfBytes> originals;
  for (const auto& p : plugins) originals.push_back(ElfBytes::read(p));
  const std::vector<Variant> variants = make_variants(plugins, originals, seed);
  ASSERT_GE(variants.size(), kMinVariants);

  // No LibTorch thread may be alive across fork; the children fit with one thread.
  at::set_num_threads(1);
  const fs::path dir = scratch_folder() / ("vguide_loader_fuzz_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const RemoveOnExit cleanup{dir};
  const std::string models = std::string(VGUIDE_TEST_SOURCE_DIR) + "/examples/models/";
  const std::string good_normal = std::string(VGUIDE_TEST_PLUGIN_DIR) + "/libnormal.so";

  size_t loaded = 0, refused = 0, next = 0;
  double loaded_seconds = 0.0, refused_seconds = 0.0;  // children's wall time, by outcome
  std::map<std::string, size_t> reasons;
  std::vector<Running> running;
  const auto start = std::chrono::steady_clock::now();

  auto launch = [&](size_t index, int slot) {
    const Variant& v = variants[index];
    Running r;
    r.index = index;
    r.output = dir / ("out" + std::to_string(slot));
    fs::remove_all(r.output);
    const ElfBytes& bytes = originals[v.source];
    if (v.xors.empty()) {  // a truncation: its own shorter file
      r.file = dir / ("v" + std::to_string(index) + "_" + v.plugin);
      bytes.write(r.file, v.size);
    } else {  // a flip: the slot's whole copy, patched in place and restored afterwards
      r.file = dir / ("slot" + std::to_string(slot) + "_" + v.plugin);
      if (!fs::exists(r.file)) bytes.write(r.file);
      patch_file(r.file, v.xors, bytes.bytes, true);
      if (::testing::Test::HasFatalFailure()) return;
    }
    std::vector<std::string> args{"vguide-host"};
    if (v.plugin == "libmixture.so")  // a mixture needs its component families loaded
      args.insert(args.end(), {"--plugin", good_normal, "--guide", "mixture", "--guide-opt", "components=normal,normal"});
    args.insert(args.end(), {"--plugin", r.file.string(), "--model", models + "eight_schools.qvr", "--data",
                             models + "eight_schools.json", "--steps", "2", "--draws", "10", "--elbo-particles",
                             "100", "--init", "default", "--quiet", "--output", r.output.string()});
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    r.pid = ::fork();
    ASSERT_GE(r.pid, 0);
    if (r.pid == 0) {
      ::close(fds[0]);
      run_host_child(args, fds[1]);
    }
    ::close(fds[1]);
    r.fd = fds[0];
    r.started = std::chrono::steady_clock::now();
    r.deadline = r.started + kChildTimeLimit;
    running.push_back(std::move(r));
  };

  // Judges a finished child; false (after a failed assertion) stops the test.
  auto judge = [&](const Running& r, int status) {
    const Variant& v = variants[r.index];
    const std::string what = v.plugin + " " + v.description + " (variant " + std::to_string(r.index) + ", seed " +
                             std::to_string(seed) + ")";
    EXPECT_FALSE(WIFSIGNALED(status)) << what << ": killed by signal " << WTERMSIG(status) << "\n" << r.stderr_text;
    if (WIFSIGNALED(status)) return false;
    const int code = WEXITSTATUS(status);
    if (code == 0) {
      EXPECT_TRUE(fs::exists(r.output / "summary.json")) << what << ": exit 0 without a summary\n" << r.stderr_text;
      ++loaded;
      loaded_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - r.started).count();
      return fs::exists(r.output / "summary.json");
    }
    const std::string prefix = "vguide-host: error: plugin " + r.file.string() + ": ";
    const bool one_line = r.stderr_text.rfind(prefix, 0) == 0 && r.stderr_text.size() > prefix.size() + 1 &&
                          r.stderr_text.find('\n') == r.stderr_text.size() - 1;
    EXPECT_EQ(code, 3) << what << "\n" << r.stderr_text;
    EXPECT_TRUE(one_line) << what << ": not one line naming the file:\n" << r.stderr_text;
    if (code != 3 || !one_line) return false;
    ++refused;
    refused_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - r.started).count();
    ++reasons[reason_class(r.stderr_text.substr(prefix.size()))];
    return true;
  };

  bool ok = true;
  while (ok && (next < variants.size() || !running.empty())) {
    while (next < variants.size() && running.size() < static_cast<size_t>(kJobs)) {
      std::set<int> used;
      for (const auto& r : running) used.insert(r.output.filename().string().back() - '0');
      int slot = 0;
      while (used.count(slot)) ++slot;
      launch(next++, slot);
      if (::testing::Test::HasFatalFailure()) return;
    }
    std::vector<pollfd> fds;
    for (const auto& r : running) fds.push_back({r.fd, static_cast<short>(r.eof ? 0 : POLLIN), 0});
    ::poll(fds.data(), fds.size(), 20);
    for (size_t i = 0; i < running.size();) {
      Running& r = running[i];
      if (!r.eof && (fds[i].revents & (POLLIN | POLLHUP))) {
        char buf[4096];
        const ssize_t n = ::read(r.fd, buf, sizeof buf);
        if (n > 0) r.stderr_text.append(buf, static_cast<size_t>(n));
        else r.eof = true;
      }
      int status = 0;
      const pid_t done = r.eof ? ::waitpid(r.pid, &status, WNOHANG) : 0;
      const bool hung = done == 0 && std::chrono::steady_clock::now() > r.deadline;
      if (done == 0 && !hung) {
        ++i;
        continue;
      }
      if (hung) {
        ::kill(r.pid, SIGKILL);
        ::waitpid(r.pid, &status, 0);
        const Variant& v = variants[r.index];
        ADD_FAILURE() << v.plugin << " " << v.description << " (variant " << r.index << ", seed " << seed
                      << "): hung for " << kChildTimeLimit.count() << " s; killed\n" << r.stderr_text;
        ok = false;
      } else if (!judge(r, status)) {
        ok = false;
      }
      ::close(r.fd);
      const Variant& done_variant = variants[r.index];
      if (done_variant.xors.empty()) fs::remove(r.file);
      else patch_file(r.file, done_variant.xors, originals[done_variant.source].bytes, false);
      if ((loaded + refused) % 250 == 0)
        std::printf("%zu of %zu variants run (%.0f s)\n", loaded + refused, variants.size(),
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      fds.erase(fds.begin() + static_cast<std::ptrdiff_t>(i));
      running.erase(running.begin() + static_cast<std::ptrdiff_t>(i));
    }
  }
  for (auto& r : running) {  // after a failure: end the others
    ::kill(r.pid, SIGKILL);
    ::waitpid(r.pid, nullptr, 0);
    ::close(r.fd);
  }

  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%zu variants in %.1f s: %zu loaded and fitted (%.0f ms each), %zu refused (%.0f ms each)\n",
              loaded + refused, seconds, loaded, 1e3 * loaded_seconds / std::max<size_t>(loaded, 1), refused,
              1e3 * refused_seconds / std::max<size_t>(refused, 1));
  std::vector<std::pair<size_t, std::string>> by_count;
  for (const auto& [reason, n] : reasons) by_count.emplace_back(n, reason);
  std::sort(by_count.rbegin(), by_count.rend());
  for (const auto& [n, reason] : by_count) std::printf("  %5zu  %s\n", n, reason.c_str());
  EXPECT_EQ(loaded + refused, variants.size());
  EXPECT_GT(refused, 0u);
  EXPECT_GT(loaded, 0u) << "no variant loaded: the copies cannot be mapped from " << dir;
}

}  // namespace
