data { int<lower=6> N; vector[N] y; }
parameters { real alpha; vector[5] beta; real<lower=0> sigma; }
model {
  alpha ~ normal(0, 5); beta ~ normal(0, 1); sigma ~ normal(0, 2);
  for (t in 6:N) {
    real mu = alpha;
    for (k in 1:5) mu += beta[k] * y[t - k];
    y[t] ~ normal(mu, sigma);
  }
}
