#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs CTest.
# VGUIDE_SANITIZE=1 scripts/test.sh runs it under AddressSanitizer + UBSan.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

build_dir="$("$root/scripts/build.sh" | tail -n 1)"
jobs="$(nproc 2>/dev/null || echo 2)"

if [[ "${VGUIDE_SANITIZE:-0}" == "1" ]]; then
  # LibTorch is not built with ASan; its one-time allocations are not our leaks.
  export ASAN_OPTIONS="detect_leaks=0:${ASAN_OPTIONS:-}"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
fi
cd "$build_dir"
ctest --output-on-failure --parallel "$jobs"
