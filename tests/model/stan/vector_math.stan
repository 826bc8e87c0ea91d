// Vector functions and reductions.
data {
  int<lower=1> N;
  vector[N] v0;
}
parameters {
  vector[5] v;
  row_vector[5] r;
}
model {
  vector[5] cs = cumulative_sum(v);
  vector[5] sm = softmax(v);
  vector[5] lsm = log_softmax(v);
  vector[5] srt = sort_asc(v);
  vector[4] lin = linspaced_vector(4, 0, 1);
  row_vector[5] ones = rep_row_vector(1, 5);
  target += sum(v) + mean(v) - sd(v) - variance(v) + prod(v) / 100;
  target += min(v) + max(v) + cs[5] + cs[2] + sm[1] + lsm[3];
  target += srt[1] - srt[5] + dot_product(v, r) / 10 - dot_self(v) / 20 - dot_self(r) / 20;
  target += num_elements(v) + size(v0) + 0.1 * sum(lin .* head(v, 4));
  target += sum(tail(v, 2)) - sum(segment(v, 2, 3)) / 2;
  target += r * v / 10 + ones * v / 7;
  target += log_sum_exp(v) - log_sum_exp(v0) + max(v0) - min(v0);
}
