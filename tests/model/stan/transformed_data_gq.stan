// Transformed data (standardisation, print), a transformed parameter on the left of
// ~ (no Jacobian: the density is in constrained space), reject in a branch that is
// never taken, generated quantities.
data {
  int<lower=1> N;
  vector[N] x;
  vector[N] y;
}
transformed data {
  real x_mean = mean(x);
  real x_sd = sd(x);
  vector[N] x_std = (x - x_mean) / x_sd;
  real y_var = variance(y);
  print("transformed data: x_mean = ", x_mean, ", x_sd = ", x_sd);
}
parameters {
  real alpha;
  real b;
  real<lower=0> sigma;
}
transformed parameters {
  real sigma2 = square(sigma);
}
model {
  if (N < 0)
    reject("N is negative: ", N);
  if (N < 0)
    print("never printed");
  alpha ~ normal(0, 1);
  b ~ normal(0, 1);
  sigma2 ~ inv_gamma(2, y_var);
  y ~ normal(alpha + b * x_std, sigma);
}
generated quantities {
  real alpha_orig = alpha - b * x_mean / x_sd;
  vector[N] mu_hat = alpha + b * x_std;
}
