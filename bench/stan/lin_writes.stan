data { int N; vector[N] x; vector[N] y; }
parameters { real alpha; real beta; real<lower=0> sigma; }
model {
  vector[N] mu;
  for (n in 1:N) mu[n] = alpha + beta * x[n];
  alpha ~ normal(0, 10); beta ~ normal(0, 10); sigma ~ normal(0, 5);
  y ~ normal(mu, sigma);
}
