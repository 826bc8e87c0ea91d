// Discrete families, vectorised with ~ and in the _lpmf form: binomial,
// binomial_logit, poisson, poisson_log, bernoulli, bernoulli_logit.
data {
  int<lower=0> N;
  array[N] int<lower=0> n_trials;
  array[N] int<lower=0> k;
  array[N] int<lower=0> cnt;
  array[N] int<lower=0, upper=1> z;
}
parameters {
  real<lower=0, upper=1> p;
  real alpha;
  real<lower=0> lambda;
}
model {
  k ~ binomial(n_trials, p);
  k ~ binomial_logit(n_trials, alpha);
  target += binomial_lpmf(k | n_trials, inv_logit(alpha));
  cnt ~ poisson(lambda);
  target += poisson_log_lpmf(cnt | log(lambda) + 0.1);
  z ~ bernoulli(p);
  target += bernoulli_logit_lpmf(z | alpha);
  lambda ~ gamma(2, 1);
  alpha ~ normal(0, 1.5);
}
