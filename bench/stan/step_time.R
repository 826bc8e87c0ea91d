# Time per iteration against Stan's ADVI (issue 18), side by side in one run:
# rstan::vb (meanfield, grad_samples = 1, and fullrank) against vguide-host's normal
# and mvn families at S = 1, float64, on the direct and the autograd step. Each time
# is the difference of a long and a short run divided by the extra iterations, so
# that start-up (LibTorch's libraries, rstan's sampler set-up, adaptation, output)
# cancels. Stan's ELBO evaluations are pushed past the end of the run (eval_elbo),
# and vguide's convergence and averaging rules are off (--convergence none
# --no-average), so both sides time the step alone.
#
# Usage: Rscript step_time.R HOST SOURCE_DIR OUT_MD [SHORT LONG [REPS]]
#   HOST        path to vguide-host (its plugins are found next to it)
#   SOURCE_DIR  the vguide checkout
#   OUT_MD      the markdown table to write
#   SHORT LONG  iteration counts (default 2000 and 202000)
#   REPS        runs of each count, the least time kept (default 3)
# Run by scripts/bench.sh when rstan is present; never by the tests.
here <- dirname(normalizePath(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])))
source(file.path(here, "stan_timing.R"))

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 3) stop("usage: step_time.R HOST SOURCE_DIR OUT_MD [SHORT LONG [REPS]]")
host <- args[1]
src <- args[2]
out_md <- args[3]
short <- if (length(args) >= 5) as.integer(args[4]) else 2000L
long <- if (length(args) >= 5) as.integer(args[5]) else 202000L
reps <- if (length(args) >= 6) as.integer(args[6]) else 3L
if (is.na(reps) || reps < 1) stop("step_time.R: REPS must be a positive integer, got '", args[6], "'")

models <- list(
  list(name = "eight schools", stan = "bench/accuracy/eight_schools.stan",
       data_r = "tests/accuracy/data/eight_schools.data.R",
       qvr = "examples/models/eight_schools.qvr", json = "examples/models/eight_schools.json"),
  list(name = "linear regression, 434 rows (kidiq)", stan = "bench/accuracy/kidiq.stan",
       data_r = "tests/accuracy/data/kidiq.data.R",
       qvr = "tests/accuracy/models/kidiq.qvr", json = "tests/accuracy/data/kidiq.json"))

host_time <- function(m, plugin, step) {
  per_iter_us(function(iter) {
    out <- tempfile("vguide_step_")
    on.exit(unlink(out, recursive = TRUE))
    status <- system2(host, c("--plugin", plugin, "--model", file.path(src, m$qvr), "--data", file.path(src, m$json),
                              "--steps", iter, "--convergence", "none", "--no-average", "--particles", 1,
                              "--step", step, "--draws", 100, "--quiet", "--output", out),
                      stdout = FALSE, stderr = FALSE)
    if (status != 0) stop("vguide-host failed on ", m$qvr, " (", plugin, ", --step ", step, ")")
  }, short, long, reps)
}

rows <- c()
for (m in models) {
  data <- new.env()
  sys.source(file.path(src, m$data_r), envir = data)
  compiled <- stan_model(file.path(src, m$stan))
  stan_mf <- stan_iter_us(compiled, as.list(data), "meanfield", 1, short, long, reps)
  stan_fr <- stan_iter_us(compiled, as.list(data), "fullrank", 1, short, long, reps)
  direct <- host_time(m, "normal", "direct")
  autograd <- host_time(m, "normal", "autograd")
  mvn <- host_time(m, "mvn", "auto")
  rows <- c(rows, sprintf("| %s | %.2f | %.2f (%.1fx) | %.1f (%.1fx) | %.2f | %.1f (%.1fx) |", m$name, stan_mf,
                          direct, direct / stan_mf, autograd, autograd / stan_mf, stan_fr, mvn, mvn / stan_fr))
}

lines <- c(
  "# Time per iteration: vguide against Stan's ADVI (rstan)",
  "",
  sprintf("`bench/stan/step_time.R`, %s; rstan %s; S = 1 (grad_samples = 1), float64, 1 thread; microseconds per",
          format(Sys.time(), "%Y-%m-%d %H:%M"), packageVersion("rstan")),
  sprintf("iteration, (time of %d iterations - time of %d) / %d, each time the least of %d runs; in brackets the",
          long, short, long - short, reps),
  "ratio to Stan's.",
  "",
  "| model | Stan meanfield | vguide normal, direct step | vguide normal, autograd | Stan fullrank | vguide mvn |",
  "|---|---|---|---|---|---|",
  rows)
tmp <- paste0(out_md, ".tmp")
writeLines(lines, tmp)
invisible(file.rename(tmp, out_md))
cat(lines, sep = "\n")
