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
#   bench/results/<name>-stan.jsonl Stan ADVI per iteration for every configuration with a Stan peer
#                                   (bench/stan/stan_column.R; only with Rscript and rstan): the
#                                   "Stan ADVI" column of every table in <name>.md
#   bench/results/<name>-startup.md process start to written outputs, vguide-host's phases beside
#                                   rstan's compile and fit (bench/startup.R; only with Rscript and rstan)
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
cmake --build "$build_dir" --parallel "$jobs" --target vguide_bench_svi vguide_bench_distributed vguide-host normal mvn \
  vguide_bench_torch_load >&2
have_rstan=0
if command -v Rscript >/dev/null && Rscript -e 'quit(status = !requireNamespace("rstan", quietly = TRUE))' >/dev/null 2>&1; then
  have_rstan=1
  "$root/bench/stan/link_bh.sh"  # before anything compiles a Stan model
else
  echo "bench.sh: Rscript or rstan not found; no Stan column, time-to-accuracy or start-up tables (scripts/setup.sh installs r-cran-rstan)" >&2
fi
smoke=()
if [[ "${VGUIDE_BENCH_ARGS:-}" == *--smoke* ]]; then smoke=(--smoke); fi

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
"$build_dir/bench/vguide_bench_distributed" "${smoke[@]}" >"$dist_out.tmp" || status=$?
mv "$dist_out.tmp" "$dist_out"
elapsed=$(($(date +%s) - start))

# The Stan column: Stan's ADVI per iteration on the configurations the driver ran
# (it lists them itself, --stan-plan), before the tables are rendered. Compiled
# Stan models are kept in the build folder between runs.
stan_out="$results/$name-stan.jsonl"
stan_args=()
if ((have_rstan)); then
  plan="$(mktemp)"
  "$build_dir/bench/vguide_bench_svi" ${VGUIDE_BENCH_ARGS:-} --stan-plan >"$plan"
  if Rscript "$root/bench/stan/stan_column.R" "$plan" "$root" "$stan_out" "${smoke[@]}" --cache "$build_dir/stan-models" >&2; then
    stan_args=(--stan "$stan_out")
  else
    status=$?
    echo "bench.sh: the Stan column failed; the tables say it was not measured" >&2
  fi
  rm -f "$plan"
fi

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
  "$build_dir/bench/vguide_bench_svi" --report "$out" --plot-dir "$plot_dir/data" "${stan_args[@]}"
  "$build_dir/bench/vguide_bench_distributed" --report "$dist_out"
} >"$results/$name.md"
gnuplot -e "dir='$plot_dir'" "$root/bench/plot.gp"
gnuplot -e "dir='$plot_dir'; cpu=1" "$root/bench/plot.gp"

# Time to accuracy against Stan's ADVI (bench/accuracy/), time per iteration beside it
# (bench/stan/step_time.R) and process start to outputs beside rstan's compile and
# fit (bench/startup.R), when R and rstan are here.
if ((have_rstan)); then
  "$root/bench/accuracy/run.sh" "$build_dir" "$results/$name-accuracy.md" || status=$?
  Rscript "$root/bench/stan/step_time.R" "$build_dir/host/vguide-host" "$root" "$results/$name-stan-steps.md" >&2 ||
    status=$?
  Rscript "$root/bench/startup.R" "$build_dir" "$root" "$results/$name-startup.md" "${smoke[@]}" >&2 ||
    status=$?
fi

echo "bench.sh: ${elapsed} s; wrote $out, $results/$name.md and $plot_dir/*.png" >&2
if ((status != 0)); then
  echo "bench.sh: the driver failed (exit $status); see the error lines in $out" >&2
fi
exit "$status"
