// Indexing: single indexes, slices a:b, :b, a:, :, multi-indexes (with a repeat),
// indexed and multi-indexed assignment, matrix rows, columns and sub-blocks.
data {
  int<lower=1> N;
  vector[N] y;
  array[3] int idx;
  array[3] int idx_assign;
  matrix[3, 4] Q;
}
parameters {
  vector[6] v;
  array[2] vector[3] z;
}
model {
  vector[6] w = v;
  vector[3] picked = v[idx];
  w[2:4] = w[2:4] * 2;
  w[idx_assign] = w[idx_assign] + 1;
  w[1] = -w[1];
  target += sum(w) / 3;
  target += sum(v[:3]) - sum(v[4:]) + sum(v[:]) / 2 + sum(v[2:5]) / 4;
  target += -sum(picked .* picked) / 10;
  target += sum(Q[2]) * v[1] + sum(Q[:, 3]) * v[2] + sum(Q[2:3, 2:4]) * v[3] + Q[3, 4] * v[4];
  target += sum(y[idx]) * v[6] + y[N] * v[5];
  target += z[2, 3] + z[1][2] / 2 + sum(z[2]) / 3;
  target += normal_lpdf(v | 0, 2);
  for (i in 1:2)
    target += normal_lpdf(z[i] | 0, 1);
}
