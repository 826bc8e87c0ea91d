// Reshaping: to_row_vector and to_vector of matrices (column-major) and vectors,
// to_array_1d of a 2-d array (row-major), to_matrix of a 2-d array.
data {
  vector[9] c9;
  array[2, 3] real a23;
}
parameters {
  matrix[3, 3] M;
  row_vector[4] rv;
}
model {
  row_vector[9] mr = to_row_vector(M);
  vector[4] cv = to_vector(rv);
  row_vector[9] cr = to_row_vector(c9);
  array[6] real a6 = to_array_1d(a23);
  matrix[2, 3] A = to_matrix(a23);
  target += mr[4] / 3 + mr[8] / 5;
  target += cv[2] * 2 + cv[4];
  target += cr * to_vector(M) / 10;
  target += a6[2] + a6[4] / 2;
  target += A[2, 1] * rv[1];
  target += normal_lpdf(to_vector(M) | 0, 1) + normal_lpdf(rv | 0, 1);
}
