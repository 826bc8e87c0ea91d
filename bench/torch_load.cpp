// vguide_bench_torch_load: a process that loads LibTorch and does nothing else, so that
// bench/startup.R can tell LibTorch's share of vguide-host's start (its libraries and
// their static initialisers) from ours. It asks LibTorch one question so that the
// linker keeps the libraries whatever its --as-needed default.
#include <ATen/Parallel.h>

int main() { return at::get_num_threads() > 0 ? 0 : 1; }
