// Linear regression written as a loop over rows with target += normal_lpdf,
// a local variable declared without a value, and heavy-tailed priors.
data {
  int<lower=0> N;
  array[N] real x;
  array[N] real y;
}
parameters {
  real alpha;
  real slope;
  real<lower=0> sigma;
}
model {
  alpha ~ student_t(3, 0, 2.5);
  slope ~ double_exponential(0, 1);
  sigma ~ lognormal(0, 1);
  for (n in 1:N) {
    real mu_n;
    mu_n = alpha + slope * x[n];
    target += normal_lpdf(y[n] | mu_n, sigma);
  }
}
