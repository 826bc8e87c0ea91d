// Softmax regression: categorical_logit on the first half of the rows (integer
// division N / 2), categorical(softmax(.)) on the rest.
data {
  int<lower=2> K;
  int<lower=0> N;
  int<lower=1> D;
  array[N] int<lower=1, upper=K> y;
  matrix[N, D] x;
}
parameters {
  matrix[D, K] B;
}
model {
  matrix[N, K] x_beta = x * B;
  to_vector(B) ~ normal(0, 5);
  for (n in 1:N) {
    if (n <= N / 2)
      y[n] ~ categorical_logit(x_beta[n]');
    else
      y[n] ~ categorical(softmax(x_beta[n]'));
  }
}
