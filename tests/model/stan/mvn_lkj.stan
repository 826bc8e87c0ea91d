// Multivariate normal with an LKJ prior on the Cholesky factor of the
// correlation matrix and half-Cauchy scales.
data {
  int<lower=1> N;
  int<lower=2> K;
  array[N] vector[K] y;
}
parameters {
  vector[K] mu;
  cholesky_factor_corr[K] L_Omega;
  vector<lower=0>[K] tau;
}
model {
  matrix[K, K] L_Sigma = diag_pre_multiply(tau, L_Omega);
  tau ~ cauchy(0, 2.5);
  L_Omega ~ lkj_corr_cholesky(2);
  mu ~ normal(0, 5);
  y ~ multi_normal_cholesky(mu, L_Sigma);
}
