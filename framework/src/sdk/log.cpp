#include "vguide/log.hpp"

#include <spdlog/spdlog.h>

namespace vguide {
void log_info(const std::string& message) { spdlog::info("{}", message); }
void log_warning(const std::string& message) { spdlog::warn("{}", message); }
}  // namespace vguide
