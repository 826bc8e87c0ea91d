#!/usr/bin/env bash
# Installs the Debian 12 packages vguide needs, if any are missing. Idempotent:
# with everything present it only checks. Uses sudo when not run as root.
set -euo pipefail

packages=(
  g++ make cmake
  libtorch-dev
  libboost-dev libboost-filesystem-dev libboost-program-options-dev
  libspdlog-dev nlohmann-json3-dev
  libgtest-dev libbenchmark-dev
  libgloo-dev  # c10d's Gloo process group for data-parallel fits (its headers)
  gnuplot-nox  # scripts/bench.sh draws the benchmark curves
  r-cran-rstan  # the draws.csv test reads our output with rstan::read_stan_csv, the real client
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "vguide setup: installing ${missing[*]}" >&2
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  if ! command -v sudo >/dev/null; then
    echo "vguide setup: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
