data { int<lower=6> N; vector[N] y; }
parameters { real alpha; vector[5] beta; real<lower=0> sigma; }
model {
  alpha ~ normal(0, 5); beta ~ normal(0, 1); sigma ~ normal(0, 2);
  y[6:N] ~ normal(alpha + beta[1] * y[5:(N-1)] + beta[2] * y[4:(N-2)] + beta[3] * y[3:(N-3)] + beta[4] * y[2:(N-4)] + beta[5] * y[1:(N-5)], sigma);
}
