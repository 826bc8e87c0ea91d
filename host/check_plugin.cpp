#include "check_plugin.hpp"

#include <dlfcn.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "vguide/guide.hpp"
#include "vguide/model/data.hpp"
#include "vguide/model/program.hpp"
#include "vguide/model/program_model.hpp"
#include "vguide/options.hpp"
#include "vguide/runtime/plugin_manager.hpp"
#include "vguide/version.hpp"

namespace vguide::host {
namespace {

// The model the factory is tried on: three real latents, no data rows.
constexpr const char* kTestProgram =
    "object Unit : 1\n"
    "program plugin_check : Unit -> Unit\n"
    "    x[K] <- Normal(0.0, 1.0)\n"
    "    return x\n"
    "output plugin_check\n";
constexpr const char* kTestData = R"({"K": 3})";
constexpr auto kTimeLimit = std::chrono::seconds(120);

void write_all(int fd, const std::string& text) {
  for (size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

// The child: each line it sends is "stage <what>", "report <text>" or "refused <line>".
[[noreturn]] void child(const std::string& file, int out) {
  try {
    write_all(out, "stage loading it\n");
    PluginManager plugins(/*seed=*/0);
    const std::string family = plugins.load(file);
    std::ostringstream report;
    for (const auto& f : plugins.families()) {
      report << "family: " << f.name << "\ndescription: " << f.description << "\nlibrary: " << f.library << "\n";
      // Loaded and checked: the descriptor's other fields are sound to read.
      void* handle = ::dlopen(file.c_str(), RTLD_NOW | RTLD_NOLOAD);
      const auto* const* alias = handle ? static_cast<const vguide_plugin_descriptor* const*>(::dlsym(handle, VGUIDE_PLUGIN_SYMBOL)) : nullptr;
      if (alias != nullptr)
        report << "ABI version: " << abi_major((*alias)->abi_version) << "." << abi_minor((*alias)->abi_version)
               << "\nLibTorch: " << (*alias)->torch_version << "\n";
      report << "SDK version: " << f.sdk_version << "\noptions:\n" << describe_options(f.options);
    }
    std::istringstream lines(report.str());
    for (std::string line; std::getline(lines, line);) write_all(out, "report " + line + "\n");

    write_all(out, "stage building a guide with default options\n");
    model::ProgramModel model(model::parse_program(kTestProgram, "<plugin check>"),
                              model::parse_data(kTestData, "<plugin check>"));
    std::string outcome;
    try {
      const auto guide = plugins.create(family, model, model.observed_names(), {});
      int64_t numel = 0;
      for (const auto& p : guide->parameters()) numel += p.numel();
      outcome = "built a guide on a 3-dimensional test model (" + std::to_string(numel) + " parameters)";
    } catch (const std::exception& e) {  // a family that needs options (mixture) lands here
      outcome = std::string("no guide with default options: ") + e.what();
    }
    write_all(out, "report factory: " + outcome.substr(0, outcome.find('\n')) + "\n");
    ::_exit(0);
  } catch (const PluginError& e) {
    const std::string what = e.what();
    write_all(out, "refused " + what.substr(0, what.find('\n')) + "\n");
    ::_exit(3);
  } catch (const std::exception& e) {
    const std::string what = e.what();
    write_all(out, "refused plugin " + file + ": " + what.substr(0, what.find('\n')) + "\n");
    ::_exit(3);
  }
}

std::string signal_name(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return std::to_string(sig) + (abbrev ? std::string(" (SIG") + abbrev + ")" : std::string());
}

void say(const std::string& line) { write_all(STDERR_FILENO, "vguide-host: " + line + "\n"); }

}  // namespace

int check_plugin(const std::string& file) {
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error("--check-plugin: cannot create a pipe");
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("--check-plugin: cannot start a child process");
  if (pid == 0) {
    ::close(fds[0]);
    child(file, fds[1]);
  }
  ::close(fds[1]);
  // Read the child's lines until it closes the pipe (it exits) or the time is up.
  const auto deadline = std::chrono::steady_clock::now() + kTimeLimit;
  std::string received;
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    received.append(buf, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }

  std::string stage, report, refused;
  std::istringstream lines(received);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("stage ", 0) == 0) stage = line.substr(6);
    else if (line.rfind("report ", 0) == 0) report += line.substr(7) + "\n";
    else if (line.rfind("refused ", 0) == 0) refused = line.substr(8);
  }
  const std::string while_ = stage.empty() ? "" : " while " + stage;
  if (timed_out) {
    say("error: plugin " + file + ": the check process did not finish within " +
        std::to_string(kTimeLimit.count()) + " s" + while_ + "; killed it");
    return kPluginCrashed;
  }
  if (WIFSIGNALED(status)) {
    say("error: plugin " + file + ": the check process was killed by signal " + signal_name(WTERMSIG(status)) + while_);
    return kPluginCrashed;
  }
  const int code = WEXITSTATUS(status);
  if (code == 3 && !refused.empty()) {
    say("error: " + refused);
    return 3;
  }
  if (code != 0) {
    say("error: plugin " + file + ": the check process exited with status " + std::to_string(code) + while_);
    return kPluginCrashed;
  }
  std::fputs(("plugin " + file + "\n" + report).c_str(), stdout);
  return 0;
}

}  // namespace vguide::host
