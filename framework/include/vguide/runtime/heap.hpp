#pragma once
/// Keeping freed memory in the process's heap between SVI steps.
///
/// A data-heavy step makes and frees tensors of hundreds of KB (logistic regression,
/// N = 5000 rows at S = 16 particles: a dozen of 640 KB each). glibc's malloc hands
/// blocks above its mmap threshold to the kernel and gives the top of the heap back
/// when more than its trim threshold is free, so every step maps and zeroes the same
/// pages again: on the benchmark machine that page faulting was half of such a step
/// (docs/performance.md, "Memory between steps"). keep_freed_memory() raises both
/// thresholds, so that freed blocks are reused by the next step.
///
/// It changes the whole process's allocator, so the library never calls it on its
/// own: vguide-host calls it before it fits, and an application that embeds the
/// runtime calls it once in main. Thresholds the user set are left as they are:
/// glibc.malloc.{mmap_threshold,trim_threshold,top_pad,mmap_max} in GLIBC_TUNABLES,
/// or their aliases MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_,
/// MALLOC_MMAP_MAX_. Under another allocator preloaded in place of glibc's (jemalloc,
/// tcmalloc) the call still sets glibc's own thresholds, which then do nothing.
///
/// Example: vguide::keep_freed_memory();  // first thing in main
#include <cstddef>
#include <string>

#include "vguide/export.hpp"

namespace vguide {

struct HeapOptions {
  /// Blocks smaller than this come from the heap, not from mmap. glibc's ceiling is
  /// 32 MB on 64-bit systems.
  std::size_t mmap_threshold = std::size_t{32} << 20;
  /// Free memory at the top of the heap that is kept rather than given back.
  std::size_t trim_threshold = std::size_t{64} << 20;
};

enum class HeapTuning {
  applied,       ///< both thresholds are set
  left_to_user,  ///< the environment sets glibc's malloc tunables: nothing changed
  unsupported,   ///< not glibc's malloc: nothing changed
};

/// @throw std::invalid_argument if options.mmap_threshold exceeds glibc's ceiling
///        (32 MB), naming the value; std::runtime_error if glibc refuses a setting.
VGUIDE_API HeapTuning keep_freed_memory(const HeapOptions& options = {});

/// True if `glibc_tunables` (GLIBC_TUNABLES' value, may be null) sets one of the four
/// tunables above, or one of their MALLOC_*_ aliases is set in the environment: the
/// user chose when the heap gives memory back.
VGUIDE_API bool heap_tuned_by_user(const char* glibc_tunables);

VGUIDE_API std::string to_string(HeapTuning tuning);

}  // namespace vguide
