// keep_freed_memory (vguide/runtime/heap.hpp): a freed block stays in the heap for the
// next step, the user's own malloc settings win, and a bad threshold is refused.
#include <gtest/gtest.h>

#include <malloc.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>

#include "vguide/runtime/heap.hpp"

namespace vguide {
namespace {

// Sets (or unsets, with nullptr) an environment variable for the scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) ::setenv(name, value, 1);
    else ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_) ::setenv(name_.c_str(), old_->c_str(), 1);
    else ::unsetenv(name_.c_str());
  }

 private:
  std::string name_;
  std::optional<std::string> old_;
};

// Each test runs in a process of its own (gtest_discover_tests): in a fresh process
// glibc's moving threshold has not passed 24 MB.
TEST(Heap, AFreedBlockStaysInTheHeapForTheNextStep) {
#if !defined(__GLIBC__)
  GTEST_SKIP() << "not glibc's malloc";
#else
  ScopedEnv tunables("GLIBC_TUNABLES", nullptr);
  ASSERT_EQ(keep_freed_memory(), HeapTuning::applied);
  // 24 MB: above anything glibc's own moving threshold reaches in a fresh process, so
  // without the call it would be mapped on its own and unmapped when freed.
  constexpr size_t kBlock = size_t{24} << 20;
  // Called through volatile pointers: the compiler may not drop the pair as unused.
  void* (*volatile allocate)(size_t) = std::malloc;
  void (*volatile release)(void*) = std::free;
  const struct mallinfo2 before = mallinfo2();
  auto* block = static_cast<char*>(allocate(kBlock));
  ASSERT_NE(block, nullptr);
  std::memset(block, 1, kBlock);
  const struct mallinfo2 held = mallinfo2();
  EXPECT_EQ(held.hblkhd, before.hblkhd) << "the block was mapped on its own";
  release(block);
  const struct mallinfo2 after = mallinfo2();
  EXPECT_EQ(after.arena, held.arena) << "the heap was trimmed";
  EXPECT_GE(after.fordblks, kBlock) << "the freed block is not free heap";
#endif
}

TEST(Heap, TheUsersOwnThresholdsAreLeftAlone) {
  ScopedEnv mmap("MALLOC_MMAP_THRESHOLD_", nullptr), trim("MALLOC_TRIM_THRESHOLD_", nullptr),
      pad("MALLOC_TOP_PAD_", nullptr), max("MALLOC_MMAP_MAX_", nullptr);
  EXPECT_TRUE(heap_tuned_by_user("glibc.malloc.trim_threshold=1000"));
  EXPECT_TRUE(heap_tuned_by_user("glibc.rtld.nns=2:glibc.malloc.top_pad=0"));
  EXPECT_TRUE(heap_tuned_by_user("glibc.malloc.mmap_threshold=1000000"));
  EXPECT_TRUE(heap_tuned_by_user("glibc.malloc.mmap_max=0"));
  // Settings that do not decide when memory goes back to the kernel.
  EXPECT_FALSE(heap_tuned_by_user("glibc.rtld.nns=2"));
  EXPECT_FALSE(heap_tuned_by_user("glibc.malloc.arena_max=2:glibc.malloc.check=3"));
  EXPECT_FALSE(heap_tuned_by_user(nullptr));
  {
    ScopedEnv set("MALLOC_ARENA_MAX", "2");
    EXPECT_FALSE(heap_tuned_by_user(nullptr));
  }
  {
    ScopedEnv set("MALLOC_TRIM_THRESHOLD_", "131072");
    EXPECT_TRUE(heap_tuned_by_user(nullptr));
  }
  ScopedEnv tunables("GLIBC_TUNABLES", "glibc.malloc.top_pad=65536");
  EXPECT_EQ(keep_freed_memory(), HeapTuning::left_to_user);
  EXPECT_EQ(to_string(HeapTuning::left_to_user), "left to the user's malloc settings");
}

TEST(Heap, AThresholdAboveGlibcsCeilingIsRefused) {
  HeapOptions options;
  options.mmap_threshold = (size_t{32} << 20) + 1;
  try {
    keep_freed_memory(options);
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(),
                 "keep_freed_memory: mmap_threshold must be at most 33554432 bytes (glibc's ceiling), got 33554433");
  }
}

}  // namespace
}  // namespace vguide
