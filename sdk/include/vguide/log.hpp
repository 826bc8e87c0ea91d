#pragma once
/// Logging for plugins, through the host's logger (spdlog in libvguide), so a
/// plugin needs no logging library of its own.
///
/// Example: vguide::log_warning("laplace: 2 Hessian eigenvalues clamped to 1e-4");
#include <string>

#include "vguide/export.hpp"

namespace vguide {
VGUIDE_API void log_info(const std::string& message);
VGUIDE_API void log_warning(const std::string& message);
}  // namespace vguide
