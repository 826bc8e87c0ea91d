#!/usr/bin/env bash
# Time to accuracy against Stan's ADVI (issue 16): builds vguide-host, the normal
# and mvn plugins and the reference tool in BUILD_DIR, writes the exact references
# as CSV, and runs time_to_accuracy.R, which times vguide-host and rstan::vb() at
# their defaults on the accuracy suite's posteriors and writes OUT_MD.
# Usage: bench/accuracy/run.sh BUILD_DIR OUT_MD [SEEDS]     (SEEDS default 1,2,3)
# Needs Rscript and rstan (scripts/setup.sh installs r-cran-rstan). scripts/bench.sh
# runs it; the tests never do.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if (($# < 2)); then
  echo "usage: bench/accuracy/run.sh BUILD_DIR OUT_MD [SEEDS]" >&2
  exit 2
fi
build_dir="$1"
out="$2"
seeds="${3:-1,2,3}"
jobs="${VGUIDE_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"

"$root/bench/stan/link_bh.sh"

cmake --build "$build_dir" --parallel "$jobs" --target vguide-host normal mvn vguide_accuracy_reference >&2
refs="$(mktemp)"
trap 'rm -f "$refs"' EXIT
"$build_dir/tests/vguide_accuracy_reference" references "$root" >"$refs"
Rscript "$root/bench/accuracy/time_to_accuracy.R" "$build_dir/host/vguide-host" "$refs" "$root" "$out" "$seeds"
