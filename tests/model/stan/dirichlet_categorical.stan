// Simplex parameters with Dirichlet priors (one an array of simplexes) and a
// categorical likelihood, vectorised and in the _lpmf form.
data {
  int<lower=1> K;
  int<lower=0> N;
  array[N] int<lower=1, upper=K> y;
  vector<lower=0>[K] alpha;
}
parameters {
  simplex[K] theta;
  array[2] simplex[3] phi;
}
model {
  theta ~ dirichlet(alpha);
  for (i in 1:2)
    phi[i] ~ dirichlet(rep_vector(1.5, 3));
  y ~ categorical(theta);
  target += categorical_lpmf(2 | phi[1]) + categorical_lpmf(3 | phi[2]);
}
