#!/usr/bin/env bash
# Configures (once) and builds vguide in build/ (or build-sanitize/ with
# VGUIDE_SANITIZE=1). Incremental: a second run only rebuilds what changed.
# Usage: scripts/build.sh [targets...]; prints the build folder on stdout.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

"$root/scripts/setup.sh"

build_dir="$root/build"
cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [[ "${VGUIDE_SANITIZE:-0}" == "1" ]]; then
  build_dir="$root/build-sanitize"
  cmake_args+=(-DVGUIDE_SANITIZE=ON)
fi

jobs="$(nproc 2>/dev/null || echo 2)"
if [[ ! -f "$build_dir/CMakeCache.txt" ]]; then
  cmake -S "$root" -B "$build_dir" "${cmake_args[@]}" >&2
fi
targets=()
if (($# > 0)); then targets=(--target "$@"); fi
# Progress goes to stderr; stdout is only the build folder, for the other scripts.
cmake --build "$build_dir" --parallel "$jobs" "${targets[@]}" >&2
echo "$build_dir"
