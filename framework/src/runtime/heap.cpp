#include "vguide/runtime/heap.hpp"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace vguide {

namespace {

// glibc's ceiling for M_MMAP_THRESHOLD on 64-bit systems (HEAP_MAX_SIZE / 2).
constexpr std::size_t kMmapThresholdCeiling = std::size_t{32} << 20;

}  // namespace

bool heap_tuned_by_user(const char* glibc_tunables) {
  // The tunables that decide when memory goes back to the kernel (arena counts,
  // checking and perturbing do not), and the variables glibc reads as their aliases.
  if (glibc_tunables)
    for (const char* name : {"glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold", "glibc.malloc.top_pad",
                             "glibc.malloc.mmap_max"})
      if (std::strstr(glibc_tunables, name)) return true;
  for (const char* name : {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_"})
    if (std::getenv(name)) return true;
  return false;
}

HeapTuning keep_freed_memory(const HeapOptions& options) {
  if (options.mmap_threshold > kMmapThresholdCeiling)
    throw std::invalid_argument("keep_freed_memory: mmap_threshold must be at most " +
                                std::to_string(kMmapThresholdCeiling) + " bytes (glibc's ceiling), got " +
                                std::to_string(options.mmap_threshold));
#if defined(__GLIBC__)
  if (heap_tuned_by_user(std::getenv("GLIBC_TUNABLES"))) return HeapTuning::left_to_user;
  // Setting either threshold also stops glibc from moving them itself, so both are set.
  if (mallopt(M_MMAP_THRESHOLD, static_cast<int>(options.mmap_threshold)) != 1)
    throw std::runtime_error("keep_freed_memory: glibc refused M_MMAP_THRESHOLD = " +
                             std::to_string(options.mmap_threshold));
  const std::size_t trim = std::min<std::size_t>(options.trim_threshold, INT_MAX);  // mallopt takes an int
  if (mallopt(M_TRIM_THRESHOLD, static_cast<int>(trim)) != 1)
    throw std::runtime_error("keep_freed_memory: glibc refused M_TRIM_THRESHOLD = " + std::to_string(trim));
  return HeapTuning::applied;
#else
  return HeapTuning::unsupported;
#endif
}

std::string to_string(HeapTuning tuning) {
  switch (tuning) {
    case HeapTuning::applied: return "applied";
    case HeapTuning::left_to_user: return "left to the user's malloc settings";
    case HeapTuning::unsupported: return "unsupported (not glibc's malloc)";
  }
  return "unknown";
}

}  // namespace vguide
