#pragma once
// `vguide-host --check-plugin FILE`: loads a plugin in a child process, so that one
// whose code faults kills the child and not the caller (docs/plugins.md).
#include <string>

namespace vguide::host {

/// Exit code of --check-plugin when the plugin ended the checking process: a signal
/// (a crash, an abort), a call to exit, or no answer within the time limit.
inline constexpr int kPluginCrashed = 7;

/// Loads `file` with a PluginManager in a forked child, prints its descriptor
/// (family, description, versions, options) and the outcome of its factory on a
/// small test model to stdout; returns 0. A refusal is one line on stderr, exit 3;
/// a child that dies is one line naming the signal and the stage, exit kPluginCrashed.
int check_plugin(const std::string& file);

}  // namespace vguide::host
