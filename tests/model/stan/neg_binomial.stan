// Negative binomial regression: neg_binomial_2 on the first ten rows (slices of a
// local vector), neg_binomial_2_log on the rest.
data {
  int<lower=11> N;
  vector[N] x;
  array[N] int<lower=0> y;
}
parameters {
  real a;
  real b;
  real<lower=0> phi;
}
model {
  vector[N] eta = a + b * x;
  a ~ normal(0, 2);
  b ~ normal(0, 1);
  phi ~ gamma(2, 0.5);
  y[1:10] ~ neg_binomial_2(exp(eta[1:10]), phi);
  y[11:N] ~ neg_binomial_2_log(eta[11:N], phi);
}
