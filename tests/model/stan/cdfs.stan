// Cumulative distribution functions: censored observations (lccdf), and each
// supported distribution's _cdf, _lcdf and _lccdf.
data {
  int<lower=0> N;
  vector[N] y;
  int<lower=0> M;
  vector[M] c;  // right-censored at c
  real u;
}
parameters {
  real mu;
  real<lower=0> sigma;
  real<lower=0> rate;
  real<lower=0> k;
}
model {
  y ~ normal(mu, sigma);
  target += normal_lccdf(c | mu, sigma);
  target += normal_lcdf(u | mu, sigma) + std_normal_lcdf(mu / 3) + log(normal_cdf(c | mu, sigma));
  target += exponential_lccdf(c | rate) + exponential_lcdf(u | rate) + log(exponential_cdf(u | rate));
  target += weibull_lcdf(u | k, 2) + weibull_lccdf(c | k, 2);
  target += logistic_lcdf(u | mu, sigma) + logistic_lccdf(u | mu, sigma);
  target += cauchy_lcdf(u | mu, sigma) + cauchy_lccdf(u | mu, sigma);
  target += double_exponential_lcdf(c | mu, sigma) + double_exponential_lccdf(c | mu, sigma);
  target += lognormal_lcdf(u | mu, sigma) + lognormal_lccdf(u | mu, sigma);
  target += gumbel_lcdf(u | mu, sigma) + gumbel_lccdf(u | mu, sigma);
  target += uniform_lcdf(u | -5, 5) + uniform_lccdf(u | -5, 5);
  mu ~ normal(0, 3);
  sigma ~ exponential(1);
  rate ~ exponential(1);
  k ~ exponential(1);
}
