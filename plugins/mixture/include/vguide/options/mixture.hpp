#pragma once
/// Deprecated: the options of the `mixture` family moved to its plugin, and this
/// header only forwards there. Include "vguide/plugins/mixture/options.hpp" instead;
/// this path goes in vguide 0.4 (docs/plugins.md, "Version and ABI policy").
#include "vguide/plugins/mixture/options.hpp"
