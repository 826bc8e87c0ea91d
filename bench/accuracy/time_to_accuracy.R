# Time to accuracy (issue 16): vguide-host at its defaults against Stan's ADVI at
# its defaults (rstan::vb, meanfield and fullrank), on the accuracy suite's
# posteriors, each scored by the worst |mean error| / reference sd.
#
# The references are exact (tests/accuracy/reference.cpp: Gaussian algebra and
# quadrature, or importance sampling for the GP), written as CSV by
# `vguide_accuracy_reference references SOURCE_DIR`; the data are the suite's own
# files (tests/accuracy/data/*.data.R, the same numbers as the .json files).
#
# Usage: Rscript time_to_accuracy.R HOST REFERENCES_CSV SOURCE_DIR OUT_MD [SEEDS]
#   HOST             path to vguide-host (its plugins are found next to it)
#   REFERENCES_CSV   the reference tool's output
#   SOURCE_DIR       the vguide checkout (models, data, Stan programs)
#   OUT_MD           the markdown table to write
#   SEEDS            comma-separated, default 1,2,3
# Run by scripts/bench.sh; never by the tests.
suppressPackageStartupMessages(library(rstan))

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 4) stop("usage: time_to_accuracy.R HOST REFERENCES_CSV SOURCE_DIR OUT_MD [SEEDS]")
host <- args[1]
refs <- read.csv(args[2], stringsAsFactors = FALSE)
src <- args[3]
out_md <- args[4]
seeds <- if (length(args) >= 5) as.integer(strsplit(args[5], ",")[[1]]) else 1:3

posteriors <- c("kidiq", "years", "tiny_sd", "eight_schools", "ar5", "gp_poisson", "gauss3")
# VGUIDE_ACCURACY_POSTERIORS=a,b runs a subset (a quick check of the script).
only <- Sys.getenv("VGUIDE_ACCURACY_POSTERIORS")
if (nzchar(only)) posteriors <- intersect(posteriors, strsplit(only, ",")[[1]])
data_dir <- file.path(src, "tests/accuracy/data")
program <- function(p) {
  if (p == "eight_schools") file.path(src, "examples/models/eight_schools.qvr")
  else file.path(src, "tests/accuracy/models", paste0(p, ".qvr"))
}
json_data <- function(p) {
  if (p == "eight_schools") file.path(src, "examples/models/eight_schools.json")
  else file.path(data_dir, paste0(p, ".json"))
}

# Stan's names ("theta[3]") from R's column names of a CSV ("theta.3").
stan_names <- function(cols) sub("\\.([0-9]+)$", "[\\1]", cols)

# Worst |mean error| / sd over the quantities the family class can hold (the same
# choice as tests/accuracy/test_accuracy.cpp): mean-field guides on `mean_field`,
# full-rank ones on `full_rank`. NA when a quantity has no fitted mean.
worst_error <- function(p, means, mean_field) {
  r <- refs[refs$posterior == p & (if (mean_field) refs$mean_field == 1 else refs$full_rank == 1), ]
  fitted <- means[r$quantity]
  if (any(is.na(fitted))) return(NA_real_)
  max(abs(fitted - r$mean) / r$sd)
}

run_vguide <- function(p, plugin, seed) {
  out <- tempfile("vguide_accuracy_")
  dir.create(out)
  on.exit(unlink(out, recursive = TRUE))
  start <- proc.time()[["elapsed"]]
  status <- system2(host, c("--plugin", plugin, "--model", program(p), "--data", json_data(p), "--seed", seed,
                            "--output", out), stdout = FALSE, stderr = FALSE)
  seconds <- proc.time()[["elapsed"]] - start
  if (status != 0 || !file.exists(file.path(out, "draws.csv"))) return(list(seconds = seconds, error = NA_real_))
  draws <- read.csv(file.path(out, "draws.csv"), comment.char = "#")
  draws <- draws[-1, , drop = FALSE]  # the first row is the guide's mean, then the draws
  means <- colMeans(draws)
  names(means) <- stan_names(names(means))
  list(seconds = seconds, error = worst_error(p, means, plugin == "normal"))
}

run_advi <- function(model, p, algorithm, seed) {
  data <- read_rdump(file.path(data_dir, paste0(p, ".data.R")))
  start <- proc.time()[["elapsed"]]
  fit <- tryCatch(suppressWarnings(vb(model, data = data, algorithm = algorithm, seed = seed, refresh = 0)),
                  error = function(e) NULL)
  seconds <- proc.time()[["elapsed"]] - start
  if (is.null(fit) || fit@mode != 0) return(list(seconds = seconds, error = NA_real_))
  draws <- as.matrix(fit)
  means <- colMeans(draws[, colnames(draws) != "lp__", drop = FALSE])
  list(seconds = seconds, error = worst_error(p, means, algorithm == "meanfield"))
}

fmt_time <- function(x) sprintf("%.2f", median(x))
fmt_error <- function(x) if (any(is.na(x))) sprintf("failed %d/%d", sum(is.na(x)), length(x)) else sprintf("%.2f", max(x))

rows <- character(0)
for (p in posteriors) {
  cat("time_to_accuracy:", p, "\n", file = stderr())
  compile <- system.time(model <- stan_model(file.path(src, "bench/accuracy", paste0(p, ".stan"))))[["elapsed"]]
  cells <- c()
  for (method in c("vguide normal", "vguide mvn", "ADVI meanfield", "ADVI fullrank")) {
    results <- lapply(seeds, function(seed) {
      switch(method,
             "vguide normal" = run_vguide(p, "normal", seed),
             "vguide mvn" = run_vguide(p, "mvn", seed),
             "ADVI meanfield" = run_advi(model, p, "meanfield", seed),
             "ADVI fullrank" = run_advi(model, p, "fullrank", seed))
    })
    cells <- c(cells, fmt_time(sapply(results, `[[`, "seconds")), fmt_error(sapply(results, `[[`, "error")))
  }
  rows <- c(rows, paste0("| ", p, " | ", paste(cells, collapse = " | "), " | ", sprintf("%.1f", compile), " |"))
}

header <- c(
  sprintf("Seeds %s; time: median wall seconds over the seeds; error: worst |mean error| / reference sd over the seeds and",
          paste(seeds, collapse = ", ")),
  "the quantities the family class can hold (mean-field: the coefficients, mu, eta, z; full-rank: every quantity but",
  "eight schools' tau); 'failed' counts runs that stopped with an error or returned no draws. vguide's time is",
  "`vguide-host --plugin F --model M --data D --seed S` from process start to its outputs; ADVI's is `rstan::vb()` at",
  "its defaults on a compiled model (compile time in the last column; R's start-up is not counted).",
  "",
  "| posterior | vguide normal s | error | vguide mvn s | error | ADVI meanfield s | error | ADVI fullrank s | error | Stan compile s |",
  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
tmp <- paste0(out_md, ".tmp")
writeLines(c(header, rows), tmp)
file.rename(tmp, out_md)
cat("time_to_accuracy: wrote", out_md, "\n", file = stderr())
