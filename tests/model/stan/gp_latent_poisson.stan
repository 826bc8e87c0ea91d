// Latent Gaussian process with a Poisson likelihood, non-centred: cov_exp_quad,
// diag_matrix jitter, a nested block in transformed parameters.
data {
  int<lower=1> N;
  array[N] real x;
  array[N] int<lower=0> k;
}
parameters {
  real<lower=0> rho;
  real<lower=0> alpha;
  vector[N] eta;
}
transformed parameters {
  vector[N] f;
  {
    matrix[N, N] L = cholesky_decompose(cov_exp_quad(x, alpha, rho)
                                        + diag_matrix(rep_vector(1e-6, N)));
    f = 1.0 + L * eta;
  }
}
model {
  rho ~ gamma(5, 5);
  alpha ~ normal(0, 1);
  eta ~ normal(0, 1);
  k ~ poisson_log(f);
}
