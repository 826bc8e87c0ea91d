#pragma once
// Runs the built vguide-host (VGUIDE_TEST_HOST from test_config.hpp) as a child
// process, for the suites that test it end to end.
#include <sys/wait.h>

#include <cstdio>
#include <string>

#include "test_config.hpp"

namespace vguide::test {

struct HostRun {
  int exit_code;       // -1 if the host did not exit normally
  std::string output;  // stdout and stderr
};

/// Runs `command` through the shell with stderr folded into stdout.
inline HostRun run_command(const std::string& command) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::string out;
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) out.append(buffer, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

/// `vguide-host <args>`; args are passed through the shell as written.
inline HostRun run_host(const std::string& args) { return run_command(std::string(VGUIDE_TEST_HOST) + " " + args); }

}  // namespace vguide::test
