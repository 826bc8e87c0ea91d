#pragma once
/// Versions a plugin is stamped with at compile time (see plugin.hpp).
///
/// ABI version: MAJOR changes when the descriptor layout, the Guide/Model vtables or
/// the factory signature change incompatibly; MINOR when something is added that an
/// older host cannot serve. A host loads a plugin with the same MAJOR and a MINOR no
/// greater than its own.
///
/// Example: static_assert(VGUIDE_ABI_VERSION == VGUIDE_MAKE_ABI_VERSION(3, 0));
#include <cstdint>

#define VGUIDE_SDK_VERSION "0.3.0"
#define VGUIDE_ABI_MAJOR 3u
#define VGUIDE_ABI_MINOR 2u  // 1: declare_location_scale; 2: its full- and low-rank forms
#define VGUIDE_MAKE_ABI_VERSION(major, minor) ((static_cast<uint32_t>(major) << 16) | static_cast<uint32_t>(minor))
#define VGUIDE_ABI_VERSION VGUIDE_MAKE_ABI_VERSION(VGUIDE_ABI_MAJOR, VGUIDE_ABI_MINOR)

namespace vguide {
inline constexpr uint32_t abi_major(uint32_t packed) { return packed >> 16; }
inline constexpr uint32_t abi_minor(uint32_t packed) { return packed & 0xffffu; }
}  // namespace vguide
