// tests/accuracy/models/tiny_sd.qvr in Stan (rstan 2.21 syntax).
data {
  int<lower=1> N;
  matrix[N, 2] X;
  vector[N] y;
}
parameters {
  real alpha;
  vector[2] beta;
  real<lower=0> sigma;
}
model {
  alpha ~ normal(0, 10);
  beta ~ normal(0, 10);
  sigma ~ normal(0, 1);
  y ~ normal(alpha + X * beta, sigma);
}
