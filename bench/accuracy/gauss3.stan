// tests/accuracy/models/gauss3.qvr in Stan (rstan 2.21 syntax).
data {
  vector[3] m;
  matrix[3, 3] S;
}
parameters {
  vector[3] z;
}
model {
  z ~ multi_normal(m, S);
}
