// The Stan reader's refusals: every unsupported construct, type error, undeclared
// name, wrong argument count and bad datum is one located message.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "vguide/bijector.hpp"
#include "vguide/model/data.hpp"
#include "vguide/model/stan_model.hpp"

using vguide::model::DataError;
using vguide::model::parse_data;
using vguide::model::parse_stan;
using vguide::model::ProgramError;
using vguide::model::StanModel;

namespace {

struct Located {
  int line = 0, column = 0;
  std::string message;
  std::string what;
};

Located refusal(const std::string& text) {
  try {
    parse_stan(text, "model.stan");
  } catch (const ProgramError& e) {
    return {e.line(), e.column(), e.message(), e.what()};
  }
  ADD_FAILURE() << "accepted:\n" << text;
  return {};
}

Located binding_refusal(const std::string& text, const std::string& data) {
  try {
    StanModel model(parse_stan(text, "model.stan"), parse_data(data, "data.json"));
  } catch (const ProgramError& e) {
    return {e.line(), e.column(), e.message(), e.what()};
  }
  ADD_FAILURE() << "bound:\n" << text;
  return {};
}

std::string data_refusal(const std::string& text, const std::string& data) {
  try {
    StanModel model(parse_stan(text, "model.stan"), parse_data(data, "data.json"));
  } catch (const DataError& e) {
    return e.what();
  }
  ADD_FAILURE() << "bound:\n" << text;
  return {};
}

void expect_refusal(const std::string& text, int line, int column, const std::string& message) {
  const Located r = refusal(text);
  EXPECT_EQ(r.message, message) << text;
  EXPECT_EQ(r.line, line) << text;
  EXPECT_EQ(r.column, column) << text;
}

}  // namespace

TEST(StanErrors, TheMessageIsLocatedWithTheLineAndACaret) {
  const Located r = refusal("parameters {\n  real mu;\n}\nmodel {\n  mu ~ normal(0, 1) T[0, ];\n}\n");
  EXPECT_EQ(r.what, "model.stan:5:21: truncation T[,] is not supported\n  mu ~ normal(0, 1) T[0, ];\n                    ^");
}

TEST(StanErrors, UnsupportedConstructsAreNamed) {
  expect_refusal("parameters { complex z; }\n", 1, 14, "the type complex is not supported");
  expect_refusal("parameters { real mu; }\nmodel { increment_log_prob(-mu^2); }\n", 2, 9,
                 "increment_log_prob is not supported (write target += ...)");
  expect_refusal("data { real x; }\nmodel { real y = gamma_cdf(x | 2, 1); }\n", 2, 18,
                 "the function gamma_cdf is not supported");
  expect_refusal("functions { real f_rng(real a) { return a; } }\n", 1, 18,
                 "user-defined _rng functions are not supported");
  expect_refusal("functions {\n real f(real a) { return a; }\n real f(real a) { return 2 * a; }\n}\n", 3, 7,
                 "the function 'f' is defined twice (overloads are not supported)");
  expect_refusal("model { profile(\"a\") { } }\n", 1, 9, "profile blocks are not supported");
  expect_refusal("data { real x; }\nmodel { x ~ normal(0, 1i); }\n", 2, 23, "complex numbers are not supported");
}

TEST(StanErrors, TypeErrorsNameBothTypes) {
  expect_refusal("data { vector[3] v; }\ntransformed data { real x = v; }\n", 2, 29,
                 "cannot assign a vector to 'x', a real");
  expect_refusal("data { vector[3] v; }\ntransformed data { real x; x = v; }\n", 2, 32,
                 "cannot assign a vector to 'x', a real");
  expect_refusal("data { vector[3] v; matrix[3, 3] m; }\ntransformed data { vector[3] w = v * m; }\n", 2, 36,
                 "'*' cannot combine a vector with a matrix");
  expect_refusal("data { real x; }\ntransformed data { int n = x; }\n", 2, 28, "cannot assign a real to 'n', an int");
  expect_refusal("data { vector[3] v; }\nmodel { if (v) { } }\n", 2, 13,
                 "a condition must be an int or a real, but this is a vector");
  expect_refusal("data { real x; }\ntransformed data { real y = x[1]; }\n", 2, 30, "too many indexes for a real");
  expect_refusal("data { vector[3] v; }\ntransformed data { real y = v[1.5]; }\n", 2, 31,
                 "an index must be an int or an array of ints, but this is a real");
  expect_refusal("data { int N; vector[N] y; }\nmodel { y ~ poisson(3); }\n", 2, 13,
                 "no version of poisson takes (vector, int) (variate first)");
  expect_refusal("functions { real f(vector a) { return sum(a); } }\ntransformed data { real y = f(2.0); }\n", 2, 29,
                 "f's argument 1 ('a') is a vector, but a real was given");
}

TEST(StanErrors, UndeclaredAndMisplacedNames) {
  expect_refusal("parameters { real mu; }\nmodel { mu ~ normal(nu, 1); }\n", 2, 21, "'nu' is not declared");
  expect_refusal("parameters { real mu; }\nmodel { mu ~ normall(0, 1); }\n", 2, 14, "unknown distribution 'normall'");
  expect_refusal("data { real x; }\ntransformed data { real y = expp(x); }\n", 2, 29, "unknown function 'expp'");
  expect_refusal("data { real x; }\nparameters { real x; }\n", 2, 19, "'x' is already declared (line 1)");
  expect_refusal("data { real x; }\ntransformed data { x = 1; }\n", 2, 20,
                 "'x' belongs to the data block and cannot be assigned here");
  expect_refusal("parameters { real mu; }\nmodel { mu = 1; }\n", 2, 9,
                 "'mu' belongs to the parameters block and cannot be assigned here");
  expect_refusal("parameters { real mu; }\ntransformed parameters { real t = mu; target += t; }\n", 2, 39,
                 "target += is only allowed in the model block");
  expect_refusal("parameters { real mu; }\nmodel { break; }\n", 2, 9, "break outside a loop");
  expect_refusal("parameters { real mu; }\nmodel { real z = normal_rng(0, 1); }\n", 2, 18,
                 "normal_rng is only allowed in transformed data and generated quantities");
  expect_refusal("model { }\ndata { real x; }\n", 2, 1,
                 "the data block comes too late (blocks go in the order functions, data, transformed data, "
                 "parameters, transformed parameters, model, generated quantities)");
}

TEST(StanErrors, WrongArgumentCountsSayHowMany) {
  expect_refusal("parameters { real mu; }\nmodel { mu ~ normal(0); }\n", 2, 14,
                 "normal takes 2 parameters, but 1 was given");
  expect_refusal("parameters { real mu; }\nmodel { target += normal_lpdf(mu | 0, 1, 2); }\n", 2, 19,
                 "normal takes 2 parameters, but 3 were given");
  expect_refusal("data { real x; }\ntransformed data { real y = exp(x, x); }\n", 2, 29,
                 "exp takes 1 argument, but 2 were given");
  expect_refusal("data { real x; }\ntransformed data { real y = log_sum_exp(); }\n", 2, 29,
                 "log_sum_exp takes 1 to 2 arguments, but 0 were given");
  expect_refusal("functions { real f(real a, real b) { return a + b; } }\ntransformed data { real y = f(1); }\n", 2, 29,
                 "f takes 2 arguments, but 1 was given");
  expect_refusal("data { int y; }\nparameters { real<lower=0> l; }\nmodel { target += poisson_lpdf(y | l); }\n", 3, 19,
                 "'poisson_lpdf': poisson is discrete; write poisson_lpmf");
}

TEST(StanErrors, SyntaxErrorsPointAtTheToken) {
  expect_refusal("parameters { real mu }\n", 1, 22, "expected ';', found '}'");
  expect_refusal("parameters { real mu; }\nmodel { mu ~ normal(0, 1) }\n", 2, 27, "expected ';', found '}'");
  expect_refusal("paramters { real mu; }\n", 1, 1, "'paramters' is not a block of a Stan program");
  expect_refusal("parameters { real mu; }\nmodel { mu ~ normal(0, 1); \n", 3, 1,
                 "the model block is not closed with '}'");
  expect_refusal("model { /* never closed\n", 1, 9, "a comment that is never closed");
  expect_refusal("data { real x$; }\n", 1, 14, "unexpected character '$'");
  expect_refusal("parameters { real mu; mu ~ normal(0, 1); }\n", 1, 23, "the parameters block holds declarations only");
}

TEST(StanErrors, BindingRefusalsAreLocated) {
  const Located bound = binding_refusal(
      "data { int N; }\nparameters { real mu; real<lower=mu> sigma; }\nmodel { }\n", "{\"N\": 1}");
  EXPECT_EQ(bound.message, "a lower bound that depends on parameters is not supported");
  EXPECT_EQ(bound.line, 2);
  EXPECT_EQ(bound.column, 34);
  const Located unit = binding_refusal("parameters { unit_vector[3] u; }\nmodel { }\n", "{}");
  EXPECT_EQ(unit.message, "unit_vector parameters are not supported");
  const Located size = binding_refusal("data { int N; }\nparameters { vector[N] b; }\nmodel { }\n", "{\"N\": -2}");
  EXPECT_EQ(size.message, "a size must not be negative, but this is -2");
  EXPECT_EQ(size.line, 2);
  const Located index = binding_refusal(
      "data { int N; vector[N] y; }\nparameters { real mu; }\nmodel { y[N + 1] ~ normal(mu, 1); }\n",
      "{\"N\": 2, \"y\": [1, 2]}");
  EXPECT_EQ(index.message, "index 3 is out of range (1 to 2)");
  EXPECT_EQ(index.line, 3);
  const Located empty = binding_refusal("parameters { simplex[0] s; }\nmodel { }\n", "{}");
  EXPECT_EQ(empty.message, "simplex of size 0 is not supported (it has no values)");
  const Located huge = binding_refusal("parameters { real mu; }\nmodel { matrix[100000, 100000] m; }\n", "{}");
  EXPECT_EQ(huge.message, "this declaration holds more than 100000000 elements");
  EXPECT_EQ(huge.line, 2);
  const Located endless =
      binding_refusal("parameters { real mu; }\nmodel { real w = 2; while (w > 1) w = w ^ 2; }\n", "{}");
  EXPECT_EQ(endless.message, "this while loop ran 100000 times without ending");
  const Located reject = binding_refusal("data { real x; }\ntransformed data { if (x < 0) reject(\"x is \", x); }\n",
                                         "{\"x\": -1}");
  EXPECT_EQ(reject.message, "reject in transformed data: x is -1");
  const Located branch =
      binding_refusal("parameters { real mu; }\nmodel { real x = mu; while (x > 0) x -= 1; }\n", "{}");
  EXPECT_EQ(branch.message, "a while condition that depends on parameters is not supported");
  EXPECT_EQ(branch.column, 31);  // the comparison
  // A break that some particles take and others do not.
  StanModel loop(parse_stan("parameters { real mu; }\nmodel { for (i in 1:10) { if (mu > 0) break; } }\n", "model.stan"),
                 parse_data("{}", "data.json"));
  try {
    loop.log_joint(at::empty({2}, at::kDouble), {{"mu", at::tensor({1.0, -1.0}, at::kDouble)}});
    ADD_FAILURE() << "diverging break accepted";
  } catch (const ProgramError& e) {
    EXPECT_EQ(e.message(), "break, continue or return under a condition that depends on parameters is not supported");
    EXPECT_EQ(e.line(), 2);
  }
}

TEST(StanErrors, DataThatBreakItsDeclarationIsNamed) {
  const std::string program = "data { int N; array[N] real<lower=0> sigma; array[N] int<lower=0, upper=1> y; }\nmodel { }\n";
  EXPECT_EQ(data_refusal(program, "{\"N\": 3, \"sigma\": [1, -2, 3], \"y\": [0, 1, 1]}"),
            "data.json: variable 'sigma[2]' is -2, but is declared <lower=0>");
  EXPECT_EQ(data_refusal(program, "{\"N\": 3, \"sigma\": [1, 2, 3], \"y\": [0, 2, 1]}"),
            "data.json: variable 'y[2]' is 2, but is declared <lower=0, upper=1>");
  EXPECT_EQ(data_refusal(program, "{\"N\": 2, \"sigma\": [1, 2, 3], \"y\": [0, 1]}"),
            "data.json: variable 'sigma' has size [3], but is declared with size [2]");
  EXPECT_EQ(data_refusal(program, "{\"N\": 2, \"sigma\": [1, 2], \"y\": [0, 0.5]}"),
            "data.json: variable 'y' must hold integers (it is declared int)");
  EXPECT_EQ(data_refusal(program, "{\"N\": 2, \"sigma\": [1, 2]}"),
            "data.json: missing variable 'y' (declared in the data block of model.stan)");
  EXPECT_EQ(data_refusal("data { simplex[3] theta; }\nmodel { }\n", "{\"theta\": [0.5, 0.4, 0.2]}"),
            "data.json: variable 'theta' is not a simplex");
  EXPECT_EQ(data_refusal("data { array[2] simplex[2] theta; }\nmodel { }\n", "{\"theta\": [[0.5, 0.5], [0.7, 0.7]]}"),
            "data.json: variable 'theta[2]' is not a simplex");
}

TEST(StanErrors, ARejectedDrawIsMinusInfinityNotAnError) {
  // reject on a data condition: every particle of the evaluation is rejected.
  StanModel model(parse_stan("data { int k; }\nparameters { real mu; }\n"
                             "model { mu ~ normal(0, 1); if (k > 0) reject(\"k is \", k); }\n",
                             "model.stan"),
                  parse_data("{\"k\": 1}", "data.json"));
  const at::Tensor lp = model.log_joint(at::empty({3}, at::kDouble), {{"mu", at::zeros({3}, at::kDouble)}});
  ASSERT_EQ(lp.sizes(), at::IntArrayRef({3}));
  EXPECT_TRUE(at::all(lp == -INFINITY).item<bool>()) << lp;
  // A transformed parameter outside its declared bounds rejects only its particle.
  StanModel bounded(parse_stan("parameters { real mu; }\ntransformed parameters { real<lower=0> t = mu; }\n"
                               "model { mu ~ normal(0, 1); }\n",
                               "model.stan"),
                    parse_data("{}", "data.json"));
  const at::Tensor lp2 =
      bounded.log_joint(at::empty({2}, at::kDouble), {{"mu", at::tensor({-1.0, 0.5}, at::kDouble)}});
  EXPECT_EQ(lp2[0].item<double>(), -INFINITY);
  EXPECT_NEAR(lp2[1].item<double>(), -0.5 * 0.25 - 0.5 * std::log(2 * M_PI), 1e-12);
}

// Generated quantities keep their declared constraints on the output draws, as Stan
// checks them; the error names the quantity, its element and the draw.
TEST(StanErrors, GeneratedQuantitiesThatBreakTheirConstraintAreNamed) {
  StanModel model(parse_stan("parameters { real mu; }\nmodel { mu ~ normal(0, 1); }\n"
                             "generated quantities {\n  real<lower=0> shifted = mu + 1;\n"
                             "  array[2] real<upper=0> neg = {-1.0, mu};\n  simplex[2] w = [0.5, 0.5]';\n"
                             "  simplex[2] v = [0.5, mu]';\n}\n",
                             "model.stan"),
                  parse_data("{}", "data.json"));
  at::Generator gen = at::detail::createCPUGenerator(1);
  const auto first_line = [&](double mu0, double mu1) -> std::string {
    try {
      model.quantities({{"mu", at::tensor({mu0, mu1}, at::kDouble)}}, gen);
    } catch (const ProgramError& e) {
      const std::string what = e.what();
      return what.substr(0, what.find('\n'));
    }
    return "(no error)";
  };
  EXPECT_EQ(first_line(-0.2, -2.5), "model.stan:4:17: generated quantity 'shifted' is -1.5, but is declared <lower=0> (output draw 2)");
  EXPECT_EQ(first_line(-0.2, 0.25), "model.stan:5:26: generated quantity 'neg[2]' is 0.25, but is declared <upper=0> (output draw 2)");
  EXPECT_EQ(first_line(-0.5, -0.5), "model.stan:7:14: generated quantity 'v' is not a simplex (output draw 1)");
}

TEST(StanErrors, AnIfOnAParameterKeepsEachParticlesOwnBranch) {
  StanModel model(parse_stan("parameters { real mu; }\nmodel {\n  real s = 0;\n  if (mu > 0) { s = 2 * mu; target += -s; }\n"
                             "  else { s = -mu; if (mu < -1) reject(\"far\"); }\n  target += -0.5 * s^2;\n}\n",
                             "model.stan"),
                  parse_data("{}", "data.json"));
  const at::Tensor mu = at::tensor({1.5, -0.5, -2.0}, at::kDouble);
  const at::Tensor lp = model.log_joint(at::empty({3}, at::kDouble), {{"mu", mu}});
  EXPECT_DOUBLE_EQ(lp[0].item<double>(), -3.0 - 0.5 * 9.0);
  EXPECT_DOUBLE_EQ(lp[1].item<double>(), -0.5 * 0.25);
  EXPECT_EQ(lp[2].item<double>(), -INFINITY);
}

TEST(StanErrors, OffsetAndMultiplierOnParametersAreStansNonCentring) {
  // theta = mu + tau * z with the site z: log p gains log(tau) per element.
  StanModel model(parse_stan("parameters { real mu; real<lower=0> tau; vector<offset=mu, multiplier=tau>[2] theta; }\n"
                             "model { theta ~ normal(mu, tau); }\n",
                             "model.stan"),
                  parse_data("{}", "data.json"));
  ASSERT_EQ(model.sites()[2].support.kind(), vguide::ConstraintKind::real);
  const at::Tensor z = at::tensor({0.3, -1.2}, at::kDouble).reshape({1, 2});
  const double tau = 2.5;
  const at::Tensor lp = model.log_joint(at::empty({1}, at::kDouble),
                                        {{"mu", at::tensor({0.7}, at::kDouble)},
                                         {"tau", at::tensor({tau}, at::kDouble)},
                                         {"theta", z}});
  // normal(mu + tau z | mu, tau) = N(z | 0, 1) / tau; times tau per element.
  const double expected = -0.5 * (0.09 + 1.44) - std::log(2 * M_PI);
  EXPECT_NEAR(lp.item<double>(), expected, 1e-12);
  at::Generator gen = at::detail::createCPUGenerator(0);
  const auto q = model.quantities({{"mu", at::tensor({0.7}, at::kDouble)}, {"tau", at::tensor({tau}, at::kDouble)},
                                   {"theta", z}},
                                  gen);
  EXPECT_NEAR(q[2].values[0][1].item<double>(), 0.7 + tau * -1.2, 1e-12);  // reported as theta, not z
}

TEST(StanErrors, PrecedenceAndSizesFollowStansManual) {
  StanModel model(parse_stan("data { matrix[2, 3] m; }\nparameters { real mu; }\nmodel { mu ~ normal(0, 1); }\n"
                             "generated quantities {\n  int a = 3 * 5 %/% 2;\n  int s = size(m);\n"
                             "  real g = tgamma(-0.25);\n  real h = 2 * 3 .* 4;\n}\n",
                             "model.stan"),
                  parse_data("{\"m\": [[1, 2, 3], [4, 5, 6]]}", "data.json"));
  at::Generator gen = at::detail::createCPUGenerator(0);
  const auto q = model.quantities({{"mu", at::zeros({1}, at::kDouble)}}, gen);
  ASSERT_EQ(q.size(), 5u);
  EXPECT_EQ(q[1].values.item<double>(), 7.0);  // (3 * 5) %/% 2: the same level, left to right
  EXPECT_EQ(q[2].values.item<double>(), 6.0);  // a matrix's size is rows * cols
  EXPECT_NEAR(q[3].values.item<double>(), std::tgamma(-0.25), 1e-10);
  EXPECT_EQ(q[4].values.item<double>(), 24.0);
}

TEST(StanErrors, SeveralNamesInOneDeclarationAndUndefinedTransformedParameters) {
  // `real a, b = 2;` declares both; a transformed parameter left undefined (NaN)
  // rejects its particle, as Stan does.
  StanModel model(parse_stan("parameters { real mu; }\ntransformed parameters {\n  real a, b = 2;\n"
                             "  a = mu > 0 ? mu : not_a_number();\n}\nmodel { mu ~ normal(0, b); }\n",
                             "model.stan"),
                  parse_data("{}", "data.json"));
  const at::Tensor lp =
      model.log_joint(at::empty({2}, at::kDouble), {{"mu", at::tensor({1.0, -1.0}, at::kDouble)}});
  EXPECT_NEAR(lp[0].item<double>(), -0.5 * 0.25 - std::log(2.0) - 0.5 * std::log(2 * M_PI), 1e-12);
  EXPECT_EQ(lp[1].item<double>(), -INFINITY);
}

TEST(StanErrors, ALoopRunsAtOnceWhereItCanAndOneIterationAtATimeWhereNot) {
  // The first loop's iterations are independent (run at once); the second's sizes
  // vary by iteration (run one at a time); the third accumulates (never at once).
  // All three must give the sums written out by hand.
  StanModel model(parse_stan("data { int N; vector[N] y; }\nparameters { real mu; }\nmodel {\n"
                             "  for (t in 2:N) { real m = mu * y[t - 1]; y[t] ~ normal(m, 1); }\n"
                             "  for (t in 1:N) { vector[t] v = rep_vector(mu, t); target += -sum(v); }\n"
                             "  real acc = 0;\n  for (t in 1:N) acc += y[t] * mu;\n  target += acc;\n}\n",
                             "model.stan"),
                  parse_data("{\"N\": 4, \"y\": [0.5, -1.0, 2.0, 0.25]}", "data.json"));
  const std::vector<double> y = {0.5, -1.0, 2.0, 0.25}, mus = {0.3, -1.7};
  const at::Tensor lp = model.log_joint(at::empty({2}, at::kDouble), {{"mu", at::tensor(mus, at::kDouble)}});
  for (size_t s = 0; s < mus.size(); ++s) {
    const double mu = mus[s];
    double expected = 0;
    for (size_t t = 1; t < y.size(); ++t) expected += -0.5 * std::pow(y[t] - mu * y[t - 1], 2) - 0.5 * std::log(2 * M_PI);
    for (int t = 1; t <= 4; ++t) expected += -t * mu;
    for (double v : y) expected += v * mu;
    EXPECT_NEAR(lp[static_cast<int64_t>(s)].item<double>(), expected, 1e-12) << "particle " << s;
  }
}

TEST(StanErrors, CompoundAssignmentToARowOfAMatrixIsARowVectorProduct) {
  // m[1] *= B multiplies the row by B (row_vector * matrix), not elementwise.
  StanModel model(parse_stan("data { matrix[2, 2] B; }\nparameters { real mu; }\nmodel {\n"
                             "  matrix[2, 2] m = [[1, 2], [3, 4]];\n  m[1] *= B;\n  target += m[1, 1] + 10 * m[1, 2] + 0 * mu;\n}\n",
                             "model.stan"),
                  parse_data("{\"B\": [[5, 6], [7, 8]]}", "data.json"));
  const at::Tensor lp = model.log_joint(at::empty({1}, at::kDouble), {{"mu", at::zeros({1}, at::kDouble)}});
  // [1, 2] * B = [19, 22]
  EXPECT_DOUBLE_EQ(lp.item<double>(), 19.0 + 220.0);
}

TEST(StanErrors, ARangeThatStartsPastTheEndIsEmpty) {
  // y[5:] of a 3-vector is empty, as in Stan: its sum is 0.
  StanModel model(parse_stan("parameters { real mu; }\nmodel { vector[3] y = [1, 2, 3]'; target += sum(y[5:]) - mu^2; }\n",
                             "model.stan"),
                  parse_data("{}", "data.json"));
  const at::Tensor lp = model.log_joint(at::empty({1}, at::kDouble), {{"mu", at::tensor({2.0}, at::kDouble)}});
  EXPECT_DOUBLE_EQ(lp.item<double>(), -4.0);
}

TEST(StanErrors, ACorrelationMatrixParameterIsItsCholeskyFactorWithTheJacobianOfLLt) {
  // LKJ's two forms: the density of Omega = L Lᵀ under lkj_corr(eta) times the Jacobian
  // of L -> L Lᵀ is lkj_corr_cholesky(eta) at L, so the two programs agree at every L.
  const std::string eta = "2.5";
  StanModel matrix(parse_stan("parameters { array[2] corr_matrix[3] Omega; }\n"
                              "model { for (k in 1:2) Omega[k] ~ lkj_corr(" + eta + "); }\n",
                              "model.stan"),
                   parse_data("{}", "data.json"));
  StanModel factor(parse_stan("parameters { array[2] cholesky_factor_corr[3] L; }\n"
                              "model { for (k in 1:2) L[k] ~ lkj_corr_cholesky(" + eta + "); }\n",
                              "model.stan"),
                   parse_data("{}", "data.json"));
  ASSERT_EQ(matrix.sites()[0].support.kind(), vguide::ConstraintKind::corr_cholesky);
  ASSERT_EQ(matrix.sites()[0].shape, (std::vector<int64_t>{2, 3, 3}));
  at::manual_seed(3);
  const auto bijector = vguide::biject_to(matrix.sites()[0].support);
  const at::Tensor L = bijector->forward(at::randn({4, 2, 3}, at::kDouble));
  ASSERT_EQ(L.sizes(), at::IntArrayRef({4, 2, 3, 3}));
  const at::Tensor x = at::empty({4}, at::kDouble);
  const at::Tensor lp_matrix = matrix.log_joint(x, {{"Omega", L}});
  const at::Tensor lp_factor = factor.log_joint(x, {{"L", L}});
  EXPECT_TRUE(at::allclose(lp_matrix, lp_factor, 1e-10, 1e-10)) << lp_matrix << lp_factor;
  // The reported value is Omega, a correlation matrix.
  at::Generator gen = at::detail::createCPUGenerator(0);
  const auto q = matrix.quantities({{"Omega", L}}, gen);
  ASSERT_EQ(q[0].name, "Omega");
  EXPECT_TRUE(at::allclose(q[0].values, at::matmul(L, L.transpose(-1, -2)), 1e-12, 1e-12));
  EXPECT_TRUE(at::allclose(q[0].values.diagonal(0, -2, -1), at::ones({4, 2, 3}, at::kDouble), 1e-12, 1e-12));
  // Data declared corr_matrix are checked as correlation matrices.
  EXPECT_EQ(data_refusal("data { corr_matrix[2] R; }\nmodel { }\n", "{\"R\": [[1, 0.5], [0.4, 1]]}"),
            "data.json: variable 'R' is not a corr_matrix");
  EXPECT_EQ(data_refusal("data { array[2] corr_matrix[2] R; }\nmodel { }\n",
                         "{\"R\": [[[1, 0.5], [0.5, 1]], [[1, 2], [2, 1]]]}"),
            "data.json: variable 'R[2]' is not a corr_matrix");
  StanModel data_ok(parse_stan("data { corr_matrix[2] R; }\nparameters { real mu; }\nmodel { mu ~ normal(R[1, 2], 1); }\n",
                               "model.stan"),
                    parse_data("{\"R\": [[1, 0.5], [0.5, 1]]}", "data.json"));
  EXPECT_NEAR(data_ok.log_joint(at::empty({1}, at::kDouble), {{"mu", at::tensor({0.5}, at::kDouble)}}).item<double>(),
              -0.5 * std::log(2 * M_PI), 1e-12);
}

TEST(StanErrors, TransformedDataRandomNumbersFollowTheSeed) {
  const std::string program =
      "transformed data { real x = normal_rng(0, 1); }\nparameters { real mu; }\nmodel { mu ~ normal(x, 1); }\n"
      "generated quantities { real c = x; }\n";
  const auto tdata = [&](uint64_t seed) {
    StanModel model(parse_stan(program, "model.stan"), parse_data("{}", "data.json"), seed);
    at::Generator gen = at::detail::createCPUGenerator(0);
    const auto q = model.quantities({{"mu", at::zeros({1}, at::kDouble)}}, gen);
    // The log density at mu = 0 is N(0 | x, 1), the same x.
    const double x = q.at(1).values.item<double>();
    EXPECT_NEAR(model.log_joint(at::empty({1}, at::kDouble), {{"mu", at::zeros({1}, at::kDouble)}}).item<double>(),
                -0.5 * x * x - 0.5 * std::log(2 * M_PI), 1e-12);
    return x;
  };
  EXPECT_EQ(tdata(1), tdata(1));
  EXPECT_NE(tdata(1), tdata(2));
  EXPECT_NE(tdata(0), tdata(3));
}

TEST(StanErrors, MoreDensitiesAgainstTheirClosedForms) {
  // lkj_corr at K = 2 is a density of the correlation r: (1 - r^2)^(eta - 1) / (2^(2 eta - 1) B(eta, eta)).
  StanModel model(parse_stan("data { int y; int n; }\nparameters { real<lower=-1, upper=1> r; real z; real<lower=0, upper=1> p; }\n"
                             "model {\n  matrix[2, 2] Omega = [[1, r], [r, 1]];\n  Omega ~ lkj_corr(2);\n"
                             "  z ~ std_normal();\n  y ~ beta_binomial(n, 2 * p + 1, 3);\n"
                             "  target += log1p_exp(z) + sum(append_array({1.0}, {2.0}));\n}\n",
                             "model.stan"),
                  parse_data("{\"y\": 3, \"n\": 7}", "data.json"));
  const double r = 0.3, z = -0.4, p = 0.25, a = 2 * p + 1, b = 3;
  const at::Tensor lp = model.log_joint(at::empty({1}, at::kDouble), {{"r", at::tensor({r}, at::kDouble)},
                                                                         {"z", at::tensor({z}, at::kDouble)},
                                                                         {"p", at::tensor({p}, at::kDouble)}});
  const auto lbeta = [](double x, double y) { return std::lgamma(x) + std::lgamma(y) - std::lgamma(x + y); };
  const double lkj = std::log(1 - r * r) - std::log(8.0) - lbeta(2, 2);
  const double normal = -0.5 * z * z - 0.5 * std::log(2 * M_PI);
  const double bb = std::lgamma(8) - std::lgamma(4) - std::lgamma(5) + lbeta(3 + a, 4 + b) - lbeta(a, b);
  EXPECT_NEAR(lp.item<double>(), lkj + normal + bb + std::log1p(std::exp(z)) + 3.0, 1e-10);
}

TEST(StanErrors, TheOldArrowAssignsAsAStatementAndComparesInAnExpression) {
  StanModel model(parse_stan("parameters { real mu; }\nmodel {\n  real a;\n  vector[2] v;\n  a <- 3;\n  v[2] <- a;\n"
                             "  v[1] <- mu<-1 ? 10 : 20;\n  target += a + v[2] + v[1];\n}\n",
                             "model.stan"),
                  parse_data("{}", "data.json"));
  const at::Tensor lp = model.log_joint(at::empty({2}, at::kDouble), {{"mu", at::tensor({-2.0, 0.0}, at::kDouble)}});
  EXPECT_DOUBLE_EQ(lp[0].item<double>(), 3 + 3 + 10);  // -2 < -1
  EXPECT_DOUBLE_EQ(lp[1].item<double>(), 3 + 3 + 20);
}

TEST(StanErrors, AMultiIndexThatVariesByIterationRunsTheLoopOneIterationAtATime) {
  // idx[t] is a different list in each iteration: the loop cannot run at once.
  StanModel model(parse_stan("data { array[2, 2] int idx; vector[3] y; }\nparameters { real mu; }\n"
                             "model { for (t in 1:2) target += sum(y[idx[t]]) * mu; }\n",
                             "model.stan"),
                  parse_data("{\"idx\": [[1, 2], [3, 3]], \"y\": [1, 10, 100]}", "data.json"));
  const at::Tensor lp = model.log_joint(at::empty({1}, at::kDouble), {{"mu", at::tensor({1.0}, at::kDouble)}});
  EXPECT_DOUBLE_EQ(lp.item<double>(), 11.0 + 200.0);
}
