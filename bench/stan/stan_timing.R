# Shared by the R scripts that time Stan's ADVI beside vguide (step_time.R,
# stan_column.R, bench/startup.R): the time of one iteration as the difference of a
# long and a short run, so that start-up (rstan's sampler set-up, the step-size
# adaptation, the output draws; LibTorch's libraries for vguide-host) cancels, and
# the rstan calls they share. A script sources it from its own folder's path:
#   here <- dirname(normalizePath(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])))
#   source(file.path(here, "stan_timing.R"))
suppressPackageStartupMessages(library(rstan))

# Wall seconds that f() takes.
elapsed <- function(f) {
  start <- proc.time()[["elapsed"]]
  f()
  proc.time()[["elapsed"]] - start
}

# Microseconds per iteration of run(iter): (time of `long` iterations - time of
# `short`) / (long - short), each time the least of `reps` runs: on a shared machine
# the noise only adds, and one short run's jitter (0.1 s) divided by 200 000 extra
# iterations is 0.5 us, a third of a small model's iteration.
per_iter_us <- function(run, short, long, reps = 1) {
  per_iter_us_of(function(iter) elapsed(function() run(iter)), short, long, reps)
}

# The same from seconds(iter), a function that returns the wall time of `iter`
# iterations itself.
per_iter_us_of <- function(seconds, short, long, reps = 1) {
  best <- function(iter) min(vapply(seq_len(reps), function(i) seconds(iter), numeric(1)))
  1e6 * (best(long) - best(short)) / (long - short)
}

# rstan::vb for `iter` iterations with `grad_samples` draws per gradient, its output
# silenced. Its ELBO evaluations (100 draws each, every eval_elbo iterations) are
# pushed past the end and the convergence tolerance out of reach, so that every
# iteration is one gradient step and the run never stops early.
vb_run <- function(compiled, data, algorithm, grad_samples, iter, seed = 1) {
  capture.output(fit <- suppressWarnings(suppressMessages(
    vb(compiled, data = data, algorithm = algorithm, grad_samples = grad_samples, iter = iter,
       eval_elbo = iter + 1, tol_rel_obj = 1e-12, output_samples = 100, seed = seed, refresh = 0))))
  if (!is(fit, "stanfit") || fit@mode != 0) stop("rstan::vb failed (", algorithm, ", ", iter, " iterations)")
  invisible(fit)
}

# Wall seconds of one vb_run. rstan 2.21 scores its output draws with PSIS after the
# iterations and stops with "missing value where TRUE/FALSE needed" when an
# approximation far from converged gives a NaN Pareto k: that run is retried with the
# next seed (up to three), and only the run that finished is timed.
vb_seconds <- function(compiled, data, algorithm, grad_samples, iter) {
  for (seed in 1:3) {
    seconds <- NA_real_
    ok <- tryCatch({
      seconds <- elapsed(function() vb_run(compiled, data, algorithm, grad_samples, iter, seed))
      TRUE
    }, error = function(e) if (seed < 3) FALSE else stop(e))
    if (ok) return(seconds)
  }
}

# Stan's time per iteration with fixed counts (step_time.R's method).
stan_iter_us <- function(compiled, data, algorithm, grad_samples, short, long, reps = 1) {
  # vb_seconds times only the run that finished (not a retried one).
  per_iter_us_of(function(iter) vb_seconds(compiled, data, algorithm, grad_samples, iter), short, long, reps)
}

# Stan's time per iteration with counts chosen for the model: the extra iterations
# grow until they take at least `target_s` seconds and at least as long as the short
# run itself (whose set-up, at a million rows, is tens of seconds and jitters by a few
# percent), so that one configuration costs seconds whether an iteration takes 2 us or
# 30 ms. Returns the time and the counts used.
stan_iter_us_auto <- function(compiled, data, algorithm, grad_samples, target_s, short = 10L) {
  run <- function(iter) vb_seconds(compiled, data, algorithm, grad_samples, iter)
  t_short <- run(short)
  extra <- 100
  repeat {
    t_long <- run(short + extra)
    d <- t_long - t_short
    need <- max(target_s, t_short)
    if (d >= need || extra >= 1e8) break
    extra <- ceiling(extra * min(50, max(2, 1.3 * need / max(d, need / 50))))
  }
  list(us = 1e6 * d / extra, short = short, long = short + extra, short_s = t_short, long_s = t_long)
}

# stan_model() for a .stan file. With `cache_dir`, the compiled model is kept there
# (rstan's auto_write beside a copy of the file) and reused while the program is
# unchanged, so that a second benchmark run does not spend minutes compiling.
compile_model <- function(stan_file, cache_dir = NULL) {
  if (!file.exists(stan_file)) stop(stan_file, ": no such Stan program")
  if (is.null(cache_dir)) return(stan_model(stan_file))
  dir.create(cache_dir, showWarnings = FALSE, recursive = TRUE)
  copy <- file.path(cache_dir, basename(stan_file))
  # Copied only when it changed: auto_write compares the .rds with the file's time.
  if (!file.exists(copy) || !identical(readLines(copy), readLines(stan_file))) file.copy(stan_file, copy, overwrite = TRUE)
  rstan_options(auto_write = TRUE)
  on.exit(rstan_options(auto_write = FALSE))
  stan_model(copy)
}
