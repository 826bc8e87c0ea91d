#!/usr/bin/env bash
# The benchmark suite (docs/performance.md): configures a Release build with the
# benchmarks in build-bench/, builds the driver, runs the suite (about 10 minutes, every configuration in both dtypes
# on 2 cores) and writes
#   bench/results/<name>.jsonl      one JSON line per configuration (and self-check)
#   bench/results/<name>-distributed.jsonl   data-parallel steps against ranks
#   bench/results/<name>.md         machine, commit, and the tables
#   bench/results/<name>/*.png      one plot per scaling curve (data in <name>/data/)
#   bench/results/<name>-accuracy.md time to accuracy against Stan's ADVI (bench/accuracy/;
#                                   only with Rscript and rstan; links BH/include once)
#   bench/results/<name>-stan-steps.md time per iteration beside Stan's ADVI (bench/stan/step_time.R;
#                                   only with Rscript and rstan)
# Usage: scripts/bench.sh [name]                 name defaults to today's date
#        VGUIDE_BENCH_ARGS="--smoke" scripts/bench.sh smoke    a quick run of every path
#        VGUIDE_BUILD_JOBS=1 scripts/bench.sh      build on one core (default: all)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
name="${1:-$(date +%Y-%m-%d)}"
if [[ ! "$name" =~ ^[A-Za-z0-9._-]+$ ]]; then
  echo "bench.sh: result name '$name' must be letters, digits, '.', '_' or '-'" >&2
  exit 2
fi

"$root/scripts/setup.sh"
if ! command -v gnuplot >/dev/null; then
  echo "bench.sh: gnuplot not found; run scripts/setup.sh (it installs gnuplot-nox)" >&2
  exit 1
fi

build_dir="$root/build-bench"
jobs="${VGUIDE_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"
cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DVGUIDE_BUILD_BENCH=ON -DVGUIDE_BUILD_EXAMPLES=OFF >&2
cmake --build "$build_dir" --parallel "$jobs" --target vguide_bench_svi vguide_bench_distributed >&2

results="$root/bench/results"
mkdir -p "$results"
out="$results/$name.jsonl"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s)
status=0
# Written to a temporary file and renamed: an interrupted run leaves no half file.
"$build_dir/bench/vguide_bench_svi" ${VGUIDE_BENCH_ARGS:-} >"$out.tmp" || status=$?
mv "$out.tmp" "$out"
# Data-parallel steps against ranks (1, 2) on N = 10^6 rows; --smoke for a quick pass.
dist_out="$results/$name-distributed.jsonl"
dist_args=()
if [[ "${VGUIDE_BENCH_ARGS:-}" == *--smoke* ]]; then dist_args=(--smoke); fi
"$build_dir/bench/vguide_bench_distributed" "${dist_args[@]}" >"$dist_out.tmp" || status=$?
mv "$dist_out.tmp" "$dist_out"
elapsed=$(($(date +%s) - start))

plot_dir="$results/$name"
rm -rf "$plot_dir"
{
  echo "# Benchmark run '$name'"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load average (1, 5, 15 min) before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- commit: $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "- LibTorch $(dpkg-query -W -f='${Version}' libtorch-dev 2>/dev/null || echo '?'), Release build, suite time ${elapsed} s"
  echo "- arguments: ${VGUIDE_BENCH_ARGS:-(none)}"
  "$build_dir/bench/vguide_bench_svi" --report "$out" --plot-dir "$plot_dir/data"
  "$build_dir/bench/vguide_bench_distributed" --report "$dist_out"
} >"$results/$name.md"
gnuplot -e "dir='$plot_dir'" "$root/bench/plot.gp"
gnuplot -e "dir='$plot_dir'; cpu=1" "$root/bench/plot.gp"

# Time to accuracy against Stan's ADVI (bench/accuracy/), when R and rstan are here.
if command -v Rscript >/dev/null && Rscript -e 'quit(status = !requireNamespace("rstan", quietly = TRUE))' >/dev/null 2>&1; then
  "$root/bench/accuracy/run.sh" "$build_dir" "$results/$name-accuracy.md" || status=$?
  # Time per iteration beside Stan's ADVI (bench/stan/step_time.R); run.sh linked BH
  # and built vguide-host with the normal and mvn plugins.
  Rscript "$root/bench/stan/step_time.R" "$build_dir/host/vguide-host" "$root" "$results/$name-stan-steps.md" >&2 ||
    status=$?
else
  echo "bench.sh: Rscript or rstan not found; skipping the time-to-accuracy table (scripts/setup.sh installs r-cran-rstan)" >&2
fi

echo "bench.sh: ${elapsed} s; wrote $out, $results/$name.md and $plot_dir/*.png" >&2
if ((status != 0)); then
  echo "bench.sh: the driver failed (exit $status); see the error lines in $out" >&2
fi
exit "$status"
