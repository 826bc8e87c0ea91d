// User-defined functions: a user _lpdf used with ~ and called directly, vector and
// real functions with loops and local variables, an int function with a foreach
// loop, called from transformed data.
functions {
  real shifted_normal_lpdf(real y, real mu, real s) {
    return normal_lpdf(y | mu + 1, s);
  }
  vector centre(vector v) {
    return v - mean(v);
  }
  real sum_sq(vector v) {
    real acc = 0;
    for (i in 1:num_elements(v))
      acc += v[i] ^ 2;
    return acc;
  }
  int count_positive(array[] real v) {
    int c = 0;
    for (x in v) {
      if (x > 0)
        c += 1;
    }
    return c;
  }
}
data {
  int<lower=1> N;
  array[N] real y;
}
transformed data {
  int n_pos = count_positive(y);
}
parameters {
  real mu;
  real<lower=0> s;
  vector[3] z;
}
model {
  for (n in 1:N)
    y[n] ~ shifted_normal(mu, s);
  target += shifted_normal_lpdf(mu | 0, 10);
  s ~ gamma(2, 2);
  target += -0.5 * sum_sq(centre(z));
  target += normal_lpdf(z | 0, 5);
  target += n_pos * log(s) / 10;
}
