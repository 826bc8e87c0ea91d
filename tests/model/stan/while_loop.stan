// While loops: one over the data rows, one whose trip count comes from data.
data {
  int<lower=1> N;
  vector[N] y;
}
parameters {
  real mu;
  real<lower=0> sigma;
}
model {
  int n = 1;
  real total = 0;
  while (n <= N) {
    total += normal_lpdf(y[n] | mu, sigma);
    n += 1;
  }
  target += total;
  {
    real width = 1024;
    int halvings = 0;
    while (width > 1) {
      width = width / 2;
      halvings += 1;
    }
    target += -0.01 * halvings * square(mu);
  }
  sigma ~ gamma(2, 1);
}
