// Logistic regression with a matrix of predictors: X * b.
data {
  int<lower=0> N;
  int<lower=1> K;
  matrix[N, K] X;
  array[N] int<lower=0, upper=1> y;
}
parameters {
  real alpha;
  vector[K] b;
}
model {
  alpha ~ normal(0, 5);
  b ~ normal(0, 2.5);
  y ~ bernoulli_logit(alpha + X * b);
}
