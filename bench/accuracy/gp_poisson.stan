// tests/accuracy/models/gp_poisson.qvr in Stan (rstan 2.21 syntax): alpha and rho
// are data, eta the latent, the kernel jitter 1e-10.
data {
  int<lower=1> N;
  real x[N];
  real<lower=0> alpha;
  real<lower=0> rho;
  int<lower=0> k[N];
}
transformed data {
  matrix[N, N] L = cholesky_decompose(add_diag(cov_exp_quad(x, alpha, rho), 1e-10));
}
parameters {
  vector[N] eta;
}
model {
  eta ~ normal(0, 1);
  k ~ poisson_log(0.5 + L * eta);
}
