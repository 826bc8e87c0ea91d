// Parameter types and their shapes: row_vector, matrix, arrays of vectors and
// row vectors, a 2-d array of reals; sizes from data.
data {
  int<lower=1> R;
  int<lower=1> C;
}
parameters {
  row_vector[C] rv;
  matrix[R, C] M;
  array[2] vector[3] av;
  array[2, 2] real a2;
  array[R] row_vector[C] arv;
  real s0;
}
model {
  rv ~ normal(0, 1);
  to_vector(M) ~ normal(1, 2);
  for (i in 1:2)
    av[i] ~ normal(-1, 1);
  for (i in 1:2)
    for (j in 1:2)
      a2[i, j] ~ normal(0, 3);
  for (r in 1:R)
    arv[r] ~ normal(rv, 1);
  s0 ~ normal(M[R, C], 0.5);
}
