#pragma once
/// Deprecated: the options of the `normal` family moved to its plugin, and this
/// header only forwards there. Include "vguide/plugins/normal/options.hpp" instead;
/// this path goes in vguide 0.4 (docs/plugins.md, "Version and ABI policy").
#include "vguide/plugins/normal/options.hpp"
