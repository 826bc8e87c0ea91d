// Constraints from data expressions: offset/multiplier, lower and upper bounds,
// a bound from transformed data, an upper-only bound, an array with bounds.
data {
  int<lower=1> J;
  vector[J] y;
  real mu0;
  real<lower=0> tau0;
  real lo;
  real hi;
}
transformed data {
  real y_min = min(y);
}
parameters {
  vector<offset=mu0, multiplier=tau0>[J] theta;
  real<lower=lo, upper=hi> u;
  real<lower=y_min> m;
  real<upper=lo> q;
  real<lower=0, upper=hi - lo> width;
  array[2] real<lower=-1, upper=1> rr;
}
model {
  theta ~ normal(mu0, tau0);
  y ~ normal(theta, 1);
  u ~ uniform(lo, hi);
  m ~ normal(y_min + 1, 2);
  q ~ normal(lo - 1, 2);
  width ~ uniform(0, hi - lo);
  rr ~ uniform(-1, 1);
}
