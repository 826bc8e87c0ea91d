// Poisson GLM with an exposure offset computed in transformed data.
data {
  int<lower=0> N;
  vector[N] x;
  vector<lower=0>[N] exposure;
  array[N] int<lower=0> y;
}
transformed data {
  vector[N] log_exposure = log(exposure);
}
parameters {
  real a;
  real b;
}
model {
  a ~ normal(0, 2.5);
  b ~ normal(0, 1);
  y ~ poisson_log(log_exposure + a + b * x);
}
