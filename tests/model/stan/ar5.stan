// AR(K) with nested loops, a local variable per step and compound assignment.
data {
  int<lower=0> K;
  int<lower=0> N;
  array[N] real y;
}
parameters {
  real alpha;
  array[K] real phi;
  real<lower=0> sigma;
}
model {
  alpha ~ normal(0, 1);
  phi ~ normal(0, 0.5);
  sigma ~ inv_gamma(3, 2);
  for (n in (K + 1):N) {
    real mu = alpha;
    for (k in 1:K) {
      mu += phi[k] * y[n - k];
    }
    y[n] ~ normal(mu, sigma);
  }
}
