// K-component mixture with simplex weights, marginalised with log_sum_exp.
data {
  int<lower=1> K;
  int<lower=1> N;
  array[N] real y;
}
parameters {
  simplex[K] theta;
  ordered[K] mu;
  real<lower=0> sigma;
}
model {
  vector[K] log_theta = log(theta);
  theta ~ dirichlet(rep_vector(2.0, K));
  mu ~ normal(0, 5);
  sigma ~ lognormal(0, 1);
  for (n in 1:N) {
    vector[K] lps = log_theta;
    for (k in 1:K)
      lps[k] += normal_lpdf(y[n] | mu[k], sigma);
    target += log_sum_exp(lps);
  }
}
