// Scalar math functions (no data block).
parameters {
  real<lower=0, upper=1> p;
  real<lower=0> s;
  real z;
}
model {
  target += exp(-s) + log(s) + log1p(s) + expm1(-s) + log1m(p);
  target += sqrt(s) - square(z) / 10 + pow(s, 1.5) / 10 + inv(1 + s);
  target += inv_logit(z) + logit(p) + log_inv_logit(z) + log1m_inv_logit(z);
  target += Phi(z / 3) + Phi_approx(z / 3) + lgamma(1 + s);
  target += fabs(z) / 5 + abs(z) / 7 + fmin(z, s) + fmax(z, -s);
  target += s ^ 2 / 20 + 2 ^ z / 100 + log_sum_exp(z, s);
  target += normal_lpdf(z | 0, 3);
}
