// if / else if / else whose conditions depend on the parameters: each particle takes
// its own branch (Stan evaluates one draw at a time).
parameters {
  real a;
  vector[3] v;
}
model {
  target += normal_lpdf(a | 0, 1) + normal_lpdf(v | 0, 1);
  if (v[2] > 0 || !(v[3] > 0))
    target += v[2];
  else
    target += -v[3];
  if (a > 0) {
    target += -a;
  } else if (a > -1) {
    target += a / 2;
  } else {
    real t = 2 * a;
    target += t;
  }
}
