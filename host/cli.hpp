#pragma once
// vguide-host's command line as a function: the executable (entry.cpp) only calls it,
// so that a test can run the host's code in a forked child without exec.
namespace vguide::host {

/// Runs vguide-host with `argv` (docs/cli.md): parses the flags, loads the plugins,
/// fits and writes the output folder. Returns the process's exit code (the codes are
/// listed in cli.cpp and docs/cli.md); errors are reported on stderr, never thrown.
///
/// Example: return vguide::host::main(argc, argv);
int main(int argc, char** argv);

}  // namespace vguide::host
