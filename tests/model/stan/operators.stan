// Operators: integer division and modulus, comparisons and logical operators on
// ints, compound assignment on reals and vectors, element-wise .* and ./,
// exponentiation (right-associative, binding tighter than unary minus), a
// conditional expression on parameters, an if on data (parameter_branching.stan has
// ifs on parameters).
data {
  int<lower=1> N;
  int<lower=1> M;
  vector[3] c;
}
transformed data {
  int q = N / M;
  int r = N % M;
  real qr = N * 1.0 / M;
  int neg_q = -N / M;
  int flags = (N > M) + (N >= 7) + (N < M) + (N <= 6) + (N == 7) + (N != 7)
              + (N > 2 && M > 2) + (N > 2 || M > 2) + !(N > 2);
}
parameters {
  real a;
  vector[3] v;
}
model {
  real b = a;
  vector[3] w = v;
  b += 1;
  b -= 0.5;
  b *= 3;
  b /= 2;
  w += c;
  w -= 1;
  w *= 2;
  w /= 4;
  w = w .* c + w ./ (1 + c .* c);
  target += normal_lpdf(a | 0, 1) + normal_lpdf(v | 0, 1);
  target += b * q + r * a - qr * square(a) / 10 + neg_q * 0.1 * a + flags * a;
  target += sum(w) / 5 - dot_self(w) / 10;
  target += a > 0 ? -a : 2 * a;
  target += (a > 0.5 && v[1] < 0) ? 1 : 0;
  if (N > M || !(M > 2))
    target += v[2];
  else
    target += -v[3];
  target += 2 ^ 3 ^ 2 / 1000.0 + (-v[1]) ^ 2 / 7;
  target += -a ^ 2 / 4;
}
