// Matrix functions: products, transposes, element-wise ops, diagonal scalings,
// triangular solves, blocks, rows and columns, reshaping (column-major), joins
// (to_row_vector of a matrix is in reshape.stan).
data {
  matrix[3, 3] A;
  vector[3] b;
  vector[9] c9;
}
parameters {
  matrix[3, 3] M;
  vector<lower=0>[3] d;
  cholesky_factor_cov[3] L;
}
model {
  matrix[3, 3] S = multiply_lower_tri_self_transpose(L);
  matrix[3, 3] Md = diag_pre_multiply(d, M) + diag_post_multiply(M, d);
  matrix[3, 3] D = diag_matrix(d);
  vector[3] u = mdivide_left_tri_low(L, b);
  row_vector[3] w = mdivide_right_tri_low(b', L);
  matrix[2, 2] Bk = block(M, 2, 1, 2, 2);
  matrix[3, 6] AM = append_col(A, M);
  matrix[6, 3] AMr = append_row(A, M);
  matrix[3, 3] C = to_matrix(c9, 3, 3);
  array[9] real m9 = to_array_1d(M);
  vector[9] mt = to_vector(M');
  target += sum(Md) / 10 - quad_form(S, b) / 50 + sum(D * M) / 10;
  target += -dot_self(u) / 10 + sum(w) / 10;
  target += sum(Bk) + sum(col(M, 2)) + sum(row(M, 3)) / 2;
  target += sum(AM .* append_col(M, A)) / 10 + sum(AMr ./ rep_matrix(2.0, 6, 3)) / 3;
  target += log_determinant(S) + sum(inverse(S + diag_matrix(rep_vector(1, 3))));
  target += sum(C .* M) / 4 + m9[2] / 2 + sum(mt .* to_vector(A)) / 5;
  target += sum(rows_dot_product(M, A) .* b) / 6 + b' * M * b / 8 + sum(M' * b) / 9;
  target += normal_lpdf(to_vector(M) | 0, 1);
}
