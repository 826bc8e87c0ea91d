// Ordinal regression: ordered cutpoints, a size from a data expression.
data {
  int<lower=2> K;
  int<lower=0> N;
  vector[N] x;
  array[N] int<lower=1, upper=K> y;
}
parameters {
  real b;
  ordered[K - 1] c;
}
model {
  b ~ normal(0, 2);
  c ~ normal(0, 3);
  y ~ ordered_logistic(x * b, c);
}
