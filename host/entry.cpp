// The vguide-host executable: everything it does is vguide::host::main (cli.hpp).
#include <cstdio>
#include <cstdlib>

#include "cli.hpp"

int main(int argc, char** argv) {
  const int code = vguide::host::main(argc, argv);
  // Everything is written, renamed and closed by now. Returning would run LibTorch's
  // static destructors, which take 50-120 ms on this machine and free nothing a
  // finished process needs (docs/performance.md, "From process start to written
  // outputs"); sanitizer builds return, so that LeakSanitizer's exit check runs.
#if defined(__SANITIZE_ADDRESS__)
  return code;
#else
  std::fflush(nullptr);
  std::_Exit(code);
#endif
}
