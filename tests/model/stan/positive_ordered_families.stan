// positive_ordered parameters and positive families: gamma, lognormal,
// inv_gamma, weibull, exponential_lpdf of an expression.
data {
  int<lower=1> N;
  vector<lower=0>[N] t;
}
parameters {
  positive_ordered[3] c;
  real<lower=0> shape;
  real<lower=0> scale;
}
model {
  c ~ gamma(2, 1);
  shape ~ lognormal(0, 0.5);
  scale ~ inv_gamma(3, 3);
  t ~ weibull(shape, scale);
  target += exponential_lpdf(c[3] - c[1] | 1);
}
