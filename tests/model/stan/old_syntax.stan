// The pre-2.26 array syntax: real y[N], int k[N], vector[K] beta_g[2], an array
// of vectors as data.
data {
  int<lower=1> N;
  int<lower=1> K;
  real y[N];
  int<lower=0> k[N];
  vector[K] X[N];
}
parameters {
  real mu;
  real<lower=0> sigma;
  vector[K] beta_g[2];
  real eps[N];
}
model {
  mu ~ normal(0, 1);
  sigma ~ exponential(1);
  for (g in 1:2)
    beta_g[g] ~ normal(0, 2);
  eps ~ normal(0, 1);
  for (n in 1:N) {
    y[n] ~ normal(mu + dot_product(X[n], beta_g[1]) + 0.1 * eps[n], sigma);
    k[n] ~ poisson_log(dot_product(X[n], beta_g[2]));
  }
}
