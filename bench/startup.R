# From process start to written outputs (issue 18): a default eight-schools fit with
# vguide-host beside rstan's compile and fit of the same model, side by side in one
# run, and where vguide's time goes.
#
#   vguide_bench_torch_load                    a process that loads LibTorch alone
#   vguide-host --version                      the process alone: loading LibTorch and
#                                              the other shared libraries, their static
#                                              initialisers, exit
#   vguide-host --timings --plugin normal      the default fit end to end (wall time from
#     --model eight_schools.qvr --data ...     R), and its phases (--timings, docs/cli.md);
#                                              after main: wall - the host's own total
#   Rscript -e 'library(rstan)'                R and rstan loading (a fresh process)
#   stan_model(eight_schools.stan)             rstan's compile (once: it is minutes)
#   vb(model, data, sample_file = ...)         the fit at its defaults (meanfield),
#                                              writing its draws as vguide writes its own
#
# Usage: Rscript startup.R BUILD_DIR SOURCE_DIR OUT_MD [--smoke]
#   BUILD_DIR   a build with host/vguide-host, its normal plugin and
#               bench/vguide_bench_torch_load (-DVGUIDE_BUILD_BENCH=ON)
#   SOURCE_DIR  the vguide checkout
#   OUT_MD      the markdown report to write
#   --smoke     one repetition of each timing instead of five
# Run by scripts/bench.sh when rstan is present; never by the tests.
here <- dirname(normalizePath(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])))
source(file.path(here, "stan", "stan_timing.R"))

args <- commandArgs(trailingOnly = TRUE)
smoke <- "--smoke" %in% args
args <- args[args != "--smoke"]
if (length(args) != 3) stop("usage: startup.R BUILD_DIR SOURCE_DIR OUT_MD [--smoke]")
host <- file.path(args[1], "host", "vguide-host")
torch_load <- file.path(args[1], "bench", "vguide_bench_torch_load")
src <- args[2]
out_md <- args[3]
for (f in c(host, torch_load)) if (!file.exists(f)) stop(f, ": not built (cmake --build BUILD_DIR --target ",
                                                         basename(f), ")")
reps <- if (smoke) 1L else 5L
model_qvr <- file.path(src, "examples/models/eight_schools.qvr")
data_json <- file.path(src, "examples/models/eight_schools.json")

# Runs the host; returns its wall seconds and its stderr lines. Stops, with its
# stderr, if it fails.
run_host <- function(host_args) {
  err <- tempfile("vguide_startup_err_")
  on.exit(unlink(err))
  status <- NA
  seconds <- elapsed(function() status <<- system2(host, host_args, stdout = FALSE, stderr = err))
  lines <- readLines(err)
  if (status != 0) stop("vguide-host ", paste(host_args, collapse = " "), " failed (", status, "): ",
                        paste(tail(lines, 3), collapse = " / "))
  list(seconds = seconds, stderr = lines)
}

# "vguide-host: timing: NAME: 12.3 ms" -> c(NAME = 12.3), in the order given.
phases_of <- function(lines) {
  m <- regmatches(lines, regexec("timing: (.+): ([0-9.]+) ms$", lines))
  m <- Filter(length, m)
  setNames(vapply(m, function(x) as.numeric(x[3]), 0), vapply(m, `[`, "", 2))
}

cat("startup: LibTorch alone\n", file = stderr())
torch_ms <- 1e3 * median(replicate(reps, elapsed(function() {
  if (system2(torch_load, stdout = FALSE, stderr = FALSE) != 0) stop(torch_load, " failed")
})))

cat("startup: vguide-host --version\n", file = stderr())
version <- replicate(reps, run_host(c("--version", "--timings")), simplify = FALSE)

cat("startup: vguide-host default eight-schools fit\n", file = stderr())
fits <- lapply(seq_len(reps), function(i) {
  out <- tempfile("vguide_startup_")
  on.exit(unlink(out, recursive = TRUE))
  r <- run_host(c("--timings", "--plugin", "normal", "--model", model_qvr, "--data", data_json, "--output", out))
  if (!file.exists(file.path(out, "draws.csv"))) stop("vguide-host wrote no draws.csv")
  r
})
phase_table <- do.call(rbind, lapply(fits, function(r) phases_of(r$stderr)))
if (is.null(dim(phase_table)) || ncol(phase_table) < 3) stop("vguide-host --timings printed no phases")
phase_ms <- apply(phase_table, 2, median)
fit_wall_ms <- 1e3 * median(sapply(fits, `[[`, "seconds"))
version_wall_ms <- 1e3 * median(sapply(version, `[[`, "seconds"))
version_main_ms <- median(sapply(version, function(r) phases_of(r$stderr)[["start to main"]]))

cat("startup: R and rstan loading\n", file = stderr())
rscript <- file.path(R.home("bin"), "Rscript")
r_load_ms <- 1e3 * median(replicate(reps, elapsed(function() {
  system2(rscript, c("-e", shQuote("suppressPackageStartupMessages(library(rstan))")), stdout = FALSE, stderr = FALSE)
})))

cat("startup: stan_model() (a minute or more)\n", file = stderr())
compile_s <- elapsed(function() capture.output(model <<- compile_model(file.path(src, "bench/accuracy/eight_schools.stan"))))
data <- read_rdump(file.path(src, "tests/accuracy/data/eight_schools.data.R"))
cat("startup: vb() at its defaults\n", file = stderr())
vb_s <- median(replicate(reps, {
  draws <- tempfile("stan_startup_", fileext = ".csv")
  s <- elapsed(function() capture.output(suppressWarnings(suppressMessages(
    vb(model, data = data, seed = 1, refresh = 0, sample_file = draws)))))
  if (!file.exists(draws)) stop("rstan::vb wrote no draws")
  unlink(draws)
  s
}))

ms <- function(x) if (x >= 100) sprintf("%.0f ms", x) else sprintf("%.1f ms", x)
after_main_ms <- fit_wall_ms - phase_ms[["total"]]
phase_rows <- vapply(names(phase_ms), function(p) sprintf("| %s | %s |", p, ms(phase_ms[[p]])), "")
lines <- c(
  "# From process start to written outputs: vguide-host against rstan (eight schools)",
  "",
  sprintf("`bench/startup.R`, %s; %s; rstan %s; median of %d runs (rstan's compile: one). The same model:",
          format(Sys.time(), "%Y-%m-%d %H:%M"), system2(host, "--version", stdout = TRUE)[1],
          packageVersion("rstan"), reps),
  "`examples/models/eight_schools.qvr` with `--plugin normal` at every default (float64, Pathfinder's start,",
  "automatic stop, 1000 draws, summary.json, draws.csv, elbo.csv, checkpoint.pt), and",
  "`bench/accuracy/eight_schools.stan` with `vb()` at its defaults (meanfield, 1000 draws written by `sample_file`).",
  "",
  "| | wall |",
  "|---|---:|",
  sprintf("| a process that loads LibTorch alone (`vguide_bench_torch_load`, start to exit) | %s |", ms(torch_ms)),
  sprintf("| `vguide-host --version` (process start to exit) | %s |", ms(version_wall_ms)),
  sprintf("| of which process start to main (libraries loaded, static initialisers run) | %s |", ms(version_main_ms)),
  sprintf("| **vguide-host, default fit, process start to exit** | **%s** |", ms(fit_wall_ms)),
  sprintf("| R start and `library(rstan)` (a fresh `Rscript`) | %s |", ms(r_load_ms)),
  sprintf("| `stan_model()`: compile | %s |", ms(1e3 * compile_s)),
  sprintf("| `vb()`: fit and write draws | %s |", ms(1e3 * vb_s)),
  sprintf("| **rstan: compile + fit** | **%s** |", ms(1e3 * (compile_s + vb_s))),
  sprintf("| rstan: R start + compile + fit | %s |", ms(r_load_ms + 1e3 * (compile_s + vb_s))),
  "",
  "vguide-host's phases (`--timings`; start to main from /proc/self/stat, in 10 ms ticks):",
  "",
  "| phase | median |",
  "|---|---:|",
  phase_rows,
  sprintf("| after main (static destructors, unloading; wall - total) | %s |", ms(after_main_ms)))
tmp <- paste0(out_md, ".tmp")
writeLines(lines, tmp)
invisible(file.rename(tmp, out_md))
cat(lines, sep = "\n")
