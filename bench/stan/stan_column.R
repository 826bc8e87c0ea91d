# The Stan column of the benchmark report (issue 18): Stan's ADVI time per iteration
# for every configuration of vguide_bench_svi that has a Stan peer — rstan::vb
# meanfield beside the `normal` guide, fullrank beside `mvn`, grad_samples = S,
# full batch — as JSON lines that `vguide_bench_svi --report R --stan FILE` puts in
# every table. The configurations come from the driver itself
# (`vguide_bench_svi [its arguments] --stan-plan`, a TSV), so the grid is never
# written twice.
#
# Models: eight schools reads the example's data (bench/accuracy/eight_schools.stan);
# the logistic regression (logistic_regression.stan) and the Normal means
# (normal_means.stan) are drawn by the same recipe as bench/models.cpp, with R's
# generator: the values differ from the driver's, the sizes do not, and Stan's cost
# per iteration depends on the sizes alone.
#
# Usage: Rscript stan_column.R PLAN_TSV SOURCE_DIR OUT_JSONL [--smoke] [--cache DIR]
#   PLAN_TSV    the driver's --stan-plan output
#   SOURCE_DIR  the vguide checkout
#   OUT_JSONL   written atomically: one line of metadata, then one per configuration
#               ({"key", "algorithm", "S", "us_per_iter", ...} or {..., "error"})
#   --smoke     extra iterations for 0.05 s instead of 1 s per configuration
#   --cache DIR keep the compiled Stan models in DIR between runs
# Run by scripts/bench.sh when rstan is present; never by the tests.
here <- dirname(normalizePath(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])))
source(file.path(here, "stan_timing.R"))

usage <- "usage: stan_column.R PLAN_TSV SOURCE_DIR OUT_JSONL [--smoke] [--cache DIR]"
args <- commandArgs(trailingOnly = TRUE)
smoke <- "--smoke" %in% args
cache_dir <- NULL
at <- match("--cache", args)
if (!is.na(at)) {
  if (at == length(args)) stop(usage)
  cache_dir <- args[at + 1]
  args <- args[-c(at, at + 1)]
}
args <- args[args != "--smoke"]
if (length(args) != 3 || any(startsWith(args, "--"))) stop(usage)
plan_path <- args[1]
src <- args[2]
out_path <- args[3]
target_s <- if (smoke) 0.05 else 1.0

plan <- read.delim(plan_path, stringsAsFactors = FALSE)
if (!all(c("key", "model", "N", "size", "algorithm", "S") %in% names(plan)))
  stop(plan_path, ": not a --stan-plan table (columns key, model, N, size, algorithm, S)")

stan_files <- c(eight_schools = file.path(src, "bench/accuracy/eight_schools.stan"),
                logistic = file.path(here, "logistic_regression.stan"),
                normal_means = file.path(here, "normal_means.stan"))

# The data of one configuration, by bench/models.cpp's recipe.
model_data <- function(model, N, size) {
  switch(model,
    eight_schools = read_rdump(file.path(src, "tests/accuracy/data/eight_schools.data.R")),
    logistic = {
      set.seed(20240510)
      X <- matrix(rnorm(N * size), N, size)
      beta <- 0.5 * rnorm(size)
      list(N = N, P = size, X = X, y = rbinom(N, 1, plogis(0.5 + drop(X %*% beta))))
    },
    normal_means = {
      set.seed(20240511)
      mu <- 10 * rnorm(size)
      list(N = N, K = size, y = matrix(mu, N, size, byrow = TRUE) + 2 * matrix(rnorm(N * size), N, size))
    },
    stop("no Stan program for the model '", model, "'"))
}

json_string <- function(x) paste0('"', gsub('"', '\\\\"', gsub("\\\\", "\\\\\\\\", x)), '"')
json_line <- function(fields) {
  values <- vapply(fields, function(v) {
    if (is.character(v)) json_string(v) else if (v == round(v)) sprintf("%.0f", v) else sprintf("%.6g", v)
  }, "")
  paste0("{", paste0(json_string(names(fields)), ": ", values, collapse = ", "), "}")
}

lines <- json_line(list(stan = paste("rstan", as.character(packageVersion("rstan"))),
                        method = "rstan::vb, grad_samples = S, eval_elbo past the end; (long - short) / extra iterations",
                        target_s = target_s))
compiled <- list()
for (key in unique(plan$key)) {
  rows <- plan[plan$key == key, ]
  model <- rows$model[1]
  data <- NULL
  for (i in seq_len(nrow(rows))) {
    r <- rows[i, ]
    cat(sprintf("stan_column: %s %s S=%d\n", key, r$algorithm, r$S), file = stderr())
    line <- tryCatch({
      if (is.null(data)) data <- model_data(model, r$N, r$size)
      if (is.null(compiled[[model]])) {
        if (is.na(stan_files[model])) stop("no Stan program for the model '", model, "'")
        compiled[[model]] <- compile_model(stan_files[[model]], cache_dir)
        # A model's first vb call costs most of a second more than the next (rstan
        # instantiates its module): not part of any configuration's set-up.
        vb_run(compiled[[model]], data, r$algorithm, r$S, 10L)
      }
      t <- stan_iter_us_auto(compiled[[model]], data, r$algorithm, r$S, target_s)
      json_line(list(key = key, algorithm = r$algorithm, S = r$S, us_per_iter = t$us, short = t$short,
                     long = t$long, short_s = t$short_s, long_s = t$long_s))
    }, error = function(e) {
      cat("stan_column: ", key, " ", r$algorithm, " S=", r$S, ": ", conditionMessage(e), "\n", sep = "", file = stderr())
      json_line(list(key = key, algorithm = r$algorithm, S = r$S, error = conditionMessage(e)))
    })
    lines <- c(lines, line)
  }
}
tmp <- paste0(out_path, ".tmp")
writeLines(lines, tmp)
invisible(file.rename(tmp, out_path))
cat("stan_column: wrote", out_path, "\n", file = stderr())
