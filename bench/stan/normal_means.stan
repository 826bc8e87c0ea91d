// bench/models/normal_means.qvr in Stan (rstan 2.21 syntax): K means, each observed
// in the N rows of y with known noise; bench/stan/stan_column.R times it.
data {
  int<lower=1> N;
  int<lower=1> K;
  matrix[N, K] y;
}
parameters {
  vector[K] mu;
}
model {
  mu ~ normal(0, 10);
  for (n in 1:N) y[n] ~ normal(mu', 2);
}
