// Foreach loops over a real array, an int array, a data vector and a local vector.
data {
  int<lower=1> N;
  array[N] real y;
  array[3] int counts;
  vector[4] wv;
}
parameters {
  real mu;
  real<lower=0> sigma;
}
model {
  vector[2] pair;
  pair[1] = mu;
  pair[2] = sigma;
  for (yn in y)
    target += normal_lpdf(yn | mu, sigma);
  for (cnt in counts)
    target += cnt * log(sigma) / 10;
  for (w in wv)
    target += -w * square(mu) / 10;
  for (p in pair)
    target += -p / 3;
  sigma ~ exponential(2);
}
