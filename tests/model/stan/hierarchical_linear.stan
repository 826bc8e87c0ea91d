// Hierarchical linear regression, non-centred group intercepts.
data {
  int<lower=1> N;
  int<lower=1> G;
  array[N] int<lower=1, upper=G> group;
  vector[N] x;
  vector[N] y;
}
parameters {
  real mu;
  real<lower=0> tau;
  vector[G] alpha_raw;
  real b;
  real<lower=0> sigma;
}
transformed parameters {
  vector[G] alpha = mu + tau * alpha_raw;
}
model {
  mu ~ normal(0, 5);
  tau ~ normal(0, 2);
  alpha_raw ~ normal(0, 1);
  b ~ normal(0, 2);
  sigma ~ normal(0, 1);
  y ~ normal(alpha[group] + b * x, sigma);
}
