#pragma once
// vguide-host's command line as a function, so that tests can run the real host code
// in a forked child without exec'ing the executable (host/entry.cpp is its main).
namespace vguide::host {

/// Runs vguide-host with `argv` (argv[0] is the program name) and returns its exit
/// code (docs/cli.md, "Exit codes and errors").
///
/// Example: char* args[] = {"vguide-host", "--version", nullptr}; vguide::host::main(2, args);
int main(int argc, char** argv);

}  // namespace vguide::host
