#!/bin/sh
# Runs the Stan parser's libFuzzer target off CI, seeded with the test corpus.
#   scripts/fuzz.sh [seconds]   (default 600; needs clang with libFuzzer, as CI's build)
set -eu
cd "$(dirname "$0")/.."
seconds="${1:-600}"
cmake --build build --target stan_parse_fuzzer
corpus="build/tests/fuzz/stan_corpus"
mkdir -p "$corpus"
cp tests/model/stan/*.stan "$corpus"/
exec build/tests/fuzz/stan_parse_fuzzer -max_total_time="$seconds" -detect_leaks=0 -timeout=10 "$corpus"
