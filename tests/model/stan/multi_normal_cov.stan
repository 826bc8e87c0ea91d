// A covariance-matrix parameter and a Cholesky-factor-of-covariance parameter:
// multi_normal, multi_normal_cholesky, inverse, log_determinant,
// multiply_lower_tri_self_transpose, the multi_normal_lpdf function form.
data {
  int<lower=1> N;
  int<lower=1> K;
  array[N] vector[K] y;
  array[N] vector[K] y2;
}
parameters {
  vector[K] mu;
  cov_matrix[K] Sigma;
  cholesky_factor_cov[K] L;
}
model {
  matrix[K, K] Sigma_inv = inverse(Sigma);
  target += -0.5 * (K + 2) * log_determinant(Sigma);
  for (k in 1:K)
    target += -0.5 * Sigma_inv[k, k];
  to_vector(L) ~ normal(0, 2);
  mu ~ normal(0, 3);
  y ~ multi_normal(mu, Sigma);
  y2 ~ multi_normal_cholesky(mu, L);
  target += multi_normal_lpdf(y[1] | mu, multiply_lower_tri_self_transpose(L));
}
