// The _lupdf / _lupmf call forms and user-defined _lpdf / _lpmf functions used with
// ~. Under the front-end's contract these keep every constant, like ~.
functions {
  real my_normal_lpdf(vector y, real mu, real sigma) {
    return normal_lpdf(y | mu, sigma);
  }
  real my_pois_lpmf(int n, real lambda) {
    return poisson_lpmf(n | lambda);
  }
}
data {
  int<lower=1> N;
  vector[N] y;
  array[N] int<lower=0> cnt;
}
parameters {
  real mu;
  real<lower=0> sigma;
  real<lower=0> lambda;
}
model {
  y ~ my_normal(mu, sigma);
  target += normal_lupdf(mu | 0, 10);
  target += lognormal_lupdf(sigma | 0, 1);
  for (n in 1:N)
    cnt[n] ~ my_pois(lambda);
  target += poisson_lupmf(cnt | lambda);
  target += gamma_lupdf(lambda | 2, 1);
}
