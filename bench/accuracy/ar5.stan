// tests/accuracy/models/ar5.qvr in Stan (rstan 2.21 syntax): conditional on the
// first five values.
data {
  int<lower=6> N;
  vector[N] y;
}
parameters {
  real alpha;
  real beta_1;
  real beta_2;
  real beta_3;
  real beta_4;
  real beta_5;
  real<lower=0> sigma;
}
model {
  alpha ~ normal(0, 5);
  beta_1 ~ normal(0, 1);
  beta_2 ~ normal(0, 1);
  beta_3 ~ normal(0, 1);
  beta_4 ~ normal(0, 1);
  beta_5 ~ normal(0, 1);
  sigma ~ normal(0, 2);
  y[6:N] ~ normal(alpha + beta_1 * y[5:(N - 1)] + beta_2 * y[4:(N - 2)] + beta_3 * y[3:(N - 3)]
                  + beta_4 * y[2:(N - 4)] + beta_5 * y[1:(N - 5)], sigma);
}
