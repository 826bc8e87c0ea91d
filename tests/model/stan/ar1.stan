// AR(1), conditional on the first observation, as a loop.
data {
  int<lower=2> N;
  vector[N] y;
}
parameters {
  real alpha;
  real<lower=-1, upper=1> phi;
  real<lower=0> sigma;
}
model {
  alpha ~ normal(0, 2);
  phi ~ uniform(-1, 1);
  sigma ~ lognormal(0, 1);
  for (n in 2:N)
    y[n] ~ normal(alpha + phi * y[n - 1], sigma);
}
