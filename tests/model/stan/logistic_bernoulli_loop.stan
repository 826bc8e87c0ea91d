// Logistic regression, one row at a time: a matrix row times a vector, bernoulli
// with inv_logit on even rows, log_inv_logit / log1m_inv_logit through ?: on odd
// rows; a logistic prior.
data {
  int<lower=0> N;
  int<lower=1> K;
  matrix[N, K] X;
  array[N] int<lower=0, upper=1> y;
}
parameters {
  vector[K] b;
}
model {
  b ~ logistic(0, 1);
  for (n in 1:N) {
    if (n % 2 == 0) {
      y[n] ~ bernoulli(inv_logit(X[n] * b));
    } else {
      target += y[n] == 1 ? log_inv_logit(X[n] * b) : log1m_inv_logit(X[n] * b);
    }
  }
}
