// Continuous families with parameter-dependent arguments, each observing data.
data {
  int<lower=1> N;
  vector[N] a1;
  vector[N] a2;
  vector[N] a3;
  vector<lower=0>[N] b1;
  vector<lower=0>[N] b2;
  vector<lower=0>[N] b3;
  vector<lower=0>[N] b4;
  vector<lower=0>[N] b5;
  vector<lower=0, upper=1>[N] c1;
  vector<lower=0, upper=1>[N] c2;
}
parameters {
  real m;
  real<lower=0> s;
  real<lower=0> k;
  real<lower=0, upper=1> w;
}
model {
  m ~ student_t(4, 0, 3);
  s ~ gamma(3, 2);
  k ~ inv_gamma(3, 2);
  w ~ beta(2, 3);
  a1 ~ double_exponential(m, s);
  a2 ~ cauchy(m, k);
  a3 ~ student_t(5, m, s);
  b1 ~ lognormal(m, s);
  b2 ~ weibull(k, s);
  b3 ~ exponential(k);
  b4 ~ gamma(k, s);
  b5 ~ inv_gamma(s, k);
  c1 ~ beta(k, s);
  c2 ~ uniform(-w, 1 + w);
}
