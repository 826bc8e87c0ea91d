// examples/models/logistic_regression.qvr in Stan (rstan 2.21 syntax), as
// bench/stan/stan_column.R times it beside vguide_bench_svi's logistic model.
data {
  int<lower=1> N;
  int<lower=1> P;
  matrix[N, P] X;
  int<lower=0, upper=1> y[N];
}
parameters {
  real alpha;
  vector[P] beta;
}
model {
  alpha ~ normal(0, 5);
  beta ~ normal(0, 2.5);
  y ~ bernoulli_logit(alpha + X * beta);
}
