#!/usr/bin/env bash
# Installs what is missing, builds, and runs the demo: a tiny fit with the
# `normal` guide through the embedding API (examples/embed/main.cpp).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

build_dir="$("$root/scripts/build.sh" vguide_embed_demo normal | tail -n 1)"
"$build_dir/examples/embed/vguide_embed_demo"
