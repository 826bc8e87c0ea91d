// Hierarchical logistic regression: group intercepts selected by a multi-index.
data {
  int<lower=1> N;
  int<lower=1> G;
  array[N] int<lower=1, upper=G> g;
  vector[N] x;
  array[N] int<lower=0, upper=1> y;
}
parameters {
  real mu_a;
  real<lower=0> sigma_a;
  vector[G] a_raw;
  real b;
}
transformed parameters {
  vector[G] a = mu_a + sigma_a * a_raw;
}
model {
  mu_a ~ normal(0, 2);
  sigma_a ~ normal(0, 1);
  a_raw ~ normal(0, 1);
  b ~ normal(0, 1);
  y ~ bernoulli_logit(a[g] + b * x);
}
