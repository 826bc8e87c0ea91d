#include "launch.hpp"

#include "vguide/runtime/distributed.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <thread>

namespace vguide::host {

namespace {

std::atomic<int> g_forward_signal{0};

extern "C" void remember_signal(int sig) { g_forward_signal.store(sig); }

int status_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

std::string describe(int rank, int status) {
  if (WIFSIGNALED(status))
    return "rank " + std::to_string(rank) + " was ended by signal " + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  return "rank " + std::to_string(rank) + " exited with status " + std::to_string(WEXITSTATUS(status));
}

}  // namespace

int launch_local(int ranks, const std::vector<std::string>& args, std::chrono::milliseconds grace) {
  const std::string port = std::to_string(vguide::free_loopback_port());
  std::vector<pid_t> pids(static_cast<size_t>(ranks), -1);
  struct sigaction forward {};
  forward.sa_handler = remember_signal;
  sigemptyset(&forward.sa_mask);
  struct sigaction old_int {}, old_term {};
  sigaction(SIGINT, &forward, &old_int);
  sigaction(SIGTERM, &forward, &old_term);

  for (int r = 0; r < ranks; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      for (pid_t p : pids)
        if (p > 0) ::kill(p, SIGKILL);
      throw std::runtime_error(std::string("--launch: cannot start rank ") + std::to_string(r) + ": " + std::strerror(errno));
    }
    if (pid == 0) {
      // Its own process group: a terminal's Ctrl-C reaches the launcher alone, which
      // forwards it once (twice would end a rank at once, without its outputs). If the
      // launcher dies, the ranks are told to stop as if interrupted.
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      sigaction(SIGINT, &old_int, nullptr);
      sigaction(SIGTERM, &old_term, nullptr);
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(ranks).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", port.c_str(), 1);
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv("/proc/self/exe", argv.data());
      std::cerr << "vguide-host: --launch: cannot run rank " << r << ": " << std::strerror(errno) << "\n";
      ::_exit(127);
    }
    pids[static_cast<size_t>(r)] = pid;
  }

  int result = 0;
  int running = ranks;
  bool failed = false;
  auto deadline = std::chrono::steady_clock::time_point::max();
  while (running > 0) {
    if (const int sig = g_forward_signal.exchange(0); sig != 0)
      for (pid_t p : pids)
        if (p > 0) ::kill(p, sig);
    int status = 0;
    const pid_t done = ::waitpid(-1, &status, WNOHANG);
    if (done > 0) {
      for (int r = 0; r < ranks; ++r) {
        if (pids[static_cast<size_t>(r)] != done) continue;
        pids[static_cast<size_t>(r)] = -1;
        --running;
        if (status_code(status) != 0 && !failed) {
          failed = true;
          result = status_code(status);
          std::cerr << "vguide-host: --launch: " << describe(r, status) << "\n";
          deadline = std::chrono::steady_clock::now() + grace;
        }
      }
      continue;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      for (int r = 0; r < ranks; ++r)
        if (pids[static_cast<size_t>(r)] > 0) {
          std::cerr << "vguide-host: --launch: rank " << r << " did not stop after rank failure; killing it\n";
          ::kill(pids[static_cast<size_t>(r)], SIGKILL);
        }
      deadline = std::chrono::steady_clock::time_point::max();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return result;
}

}  // namespace vguide::host
