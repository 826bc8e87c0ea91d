// Eight schools, non-centred, with the old array syntax in the data block, a
// transformed parameter and generated quantities (no effect on the density).
data {
  int<lower=0> J;
  real y[J];
  real<lower=0> sigma[J];
}
parameters {
  real mu;
  real<lower=0> tau;
  vector[J] theta_tilde;
}
transformed parameters {
  vector[J] theta = mu + tau * theta_tilde;
}
model {
  mu ~ normal(0, 5);
  tau ~ cauchy(0, 5);
  theta_tilde ~ normal(0, 1);
  y ~ normal(theta, sigma);
}
generated quantities {
  real theta_mean = mean(theta);
  vector[J] z;
  for (j in 1:J)
    z[j] = (y[j] - theta[j]) / sigma[j];
}
