// tests/accuracy/models/kidiq.qvr in Stan (rstan 2.21 syntax).
data {
  int<lower=1> N;
  vector[N] x;
  vector[N] y;
}
parameters {
  real beta_0;
  real beta_1;
  real<lower=0> sigma;
}
model {
  beta_0 ~ normal(0, 100);
  beta_1 ~ normal(0, 10);
  sigma ~ normal(0, 50);
  y ~ normal(beta_0 + beta_1 * x, sigma);
}
