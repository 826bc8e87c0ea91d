#!/usr/bin/env bash
# rstan 2.21 compiles models against the Boost headers it expects in BH's package
# folder (BH/include); Debian's r-cran-bh has them in /usr/include instead. Links them
# once (idempotent: an existing BH/include is left alone). Run by bench/accuracy/run.sh
# and scripts/bench.sh before anything compiles a Stan model.
set -euo pipefail
bh="$(Rscript -e 'cat(system.file(package = "BH"))')"
if [[ -z "$bh" ]]; then
  echo "bench/stan/link_bh.sh: R package BH not found (scripts/setup.sh installs r-cran-rstan, which depends on it)" >&2
  exit 1
fi
if [[ ! -e "$bh/include" ]]; then
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" ln -s /usr/include "$bh/include"
  echo "bench/stan/link_bh.sh: linked $bh/include -> /usr/include (once, for rstan's model compiler)" >&2
fi
