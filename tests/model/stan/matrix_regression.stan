// Regression on a design matrix built in transformed data with append_col; sizes
// from cols()/rows() of a transformed-data matrix; weibull prior.
data {
  int<lower=0> N;
  int<lower=1> K;
  matrix[N, K] X;
  vector[N] y;
}
transformed data {
  matrix[N, K + 1] Xc = append_col(rep_vector(1, N), X);
  int P = cols(Xc);
  int R = rows(Xc);
}
parameters {
  vector[P] b;
  real<lower=0> sigma;
}
model {
  b ~ normal(0, 5);
  sigma ~ weibull(2, 1);
  y ~ normal(Xc * b, sigma);
  target += -0.001 * R;
}
