// The `.qvr` parser: the quivers-style core, each program error with its exact
// message and location, and a bounded fuzz run over mutations of valid programs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "vguide/model/program.hpp"
#include "vguide/model/program_model.hpp"

#include <ATen/ATen.h>

#include "regression_program.hpp"

namespace vguide::model {
namespace {


TEST(Program, ParsesTheQuiversRegression) {
  const ProgramFile file = parse_program(kRegression, "regression.qvr");
  EXPECT_EQ(file.objects.at("Predictor"), 1);
  EXPECT_EQ(file.objects.at("Response"), 1);
  ASSERT_EQ(file.programs.size(), 1u);
  EXPECT_EQ(file.output, "bayesian_regression");
  const Program& p = file.output_program();
  EXPECT_EQ(p.domain, "Predictor");
  EXPECT_EQ(p.codomain, "Response");
  ASSERT_EQ(p.steps.size(), 7u);
  const std::vector<Step::Kind> kinds = {Step::Kind::draw, Step::Kind::draw, Step::Kind::draw, Step::Kind::draw,
                                         Step::Kind::let,  Step::Kind::observe, Step::Kind::ret};
  const std::vector<std::string> names = {"sigma", "beta_0", "beta_1", "x", "mu", "y", "y"};
  for (size_t i = 0; i < kinds.size(); ++i) {
    EXPECT_EQ(p.steps[i].kind, kinds[i]) << i;
    EXPECT_EQ(p.steps[i].name, names[i]) << i;
  }
  EXPECT_EQ(p.steps[0].family, "HalfCauchy");
  EXPECT_EQ(p.steps[2].family, "Normal");
  EXPECT_EQ(p.steps[5].loc.line, 11);
  EXPECT_EQ(p.steps[5].loc.column, 5);
  // Precedence: beta_0 + (beta_1 * x).
  EXPECT_EQ(to_string(p.steps[4].value), "(beta_0 + (beta_1 * x))");
}

TEST(Program, ExpressionPrecedenceUnaryMinusAndCalls) {
  const ProgramFile file = parse_program(
      "object A : 2\nprogram p : A -> A\n  a <- Normal(0, 1)\n  let b = -a * 2 - 3 / (a + 1e-1) + exp(log(abs(a)))\n"
      "  let c = sigmoid(softplus(-(-b)))\n  return c\noutput p\n",
      "p.qvr");
  const Program& p = file.output_program();
  EXPECT_EQ(to_string(p.steps[1].value), "(((-a * 2.0) - (3.0 / (a + 0.10000000000000001))) + exp(log(abs(a))))");
  EXPECT_EQ(to_string(p.steps[2].value), "sigmoid(softplus(--b))");
}

TEST(Program, SeveralProgramsAndTheOutputChoosesOne) {
  const ProgramFile file = parse_program(
      "object A : 1\nprogram first : A -> A\n    a <- Normal(0.0, 1.0)\n    return a\n"
      "program second : A -> A\n    draw b ~ Exponential(1.0)\n    return b\noutput second\n");
  ASSERT_EQ(file.programs.size(), 2u);
  EXPECT_EQ(file.output_program().name, "second");
  EXPECT_EQ(file.output_program().steps[0].name, "b");
}

TEST(Program, PrintedProgramParsesToTheSameText) {
  const ProgramFile file = parse_program(kRegression);
  const std::string printed = to_string(file.output_program());
  const ProgramFile again = parse_program("object Predictor : 1\nobject Response : 1\n" + printed +
                                          "output bayesian_regression\n");
  EXPECT_EQ(to_string(again.output_program()), printed);
}

struct ErrorCase {
  std::string what;
  std::string text;
  int line;
  int column;
  std::string message;
};

const std::string kHead = "object A : 1\nprogram p : A -> A\n";

std::vector<ErrorCase> error_cases() {
  const std::string deep = std::string(5000, '(') + "1.0" + std::string(5000, ')');
  const std::string neg = std::string(3000, '-') + "1.0";
  return {
      {"unexpected token", kHead + "    mu <- Normal(0.0 5.0)\noutput p\n", 3, 22,
       "expected ')' to close the argument list, got number '5.0'"},
      {"unknown family", kHead + "    mu <- Normla(0.0, 1.0)\noutput p\n", 3, 11,
       "unknown family 'Normla'; did you mean 'Normal'?"},
      {"unknown family without suggestion", kHead + "    mu <- Zzzzzzzzzz(1.0)\noutput p\n", 3, 11,
       "unknown family 'Zzzzzzzzzz'"},
      {"argument count", kHead + "    mu <- Normal(0.0)\noutput p\n", 3, 11,
       "Normal expects 2 arguments (loc, scale), got 1"},
      {"function argument count", kHead + "    mu <- Normal(exp(1.0, 2.0), 1.0)\noutput p\n", 3, 18,
       "exp expects 1 argument, got 2"},
      {"unknown function", kHead + "    mu <- Normal(foo(1.0), 1.0)\noutput p\n", 3, 18, "unknown function 'foo'"},
      {"unknown name", kHead + "    mu <- Normal(0.0, 1.0)\n    let m = mu + z\noutput p\n", 4, 18,
       "unknown name 'z'"},
      {"unknown returned name", kHead + "    mu <- Normal(0.0, 1.0)\n    return nu\noutput p\n", 4, 12,
       "unknown name 'nu'"},
      {"use before definition", kHead + "    let m = mu\n    mu <- Normal(0.0, 1.0)\noutput p\n", 3, 13,
       "unknown name 'mu'"},
      {"duplicate site", kHead + "    mu <- Normal(0.0, 1.0)\n    draw mu ~ Normal(0.0, 1.0)\noutput p\n", 4, 10,
       "duplicate site 'mu' (first defined at line 3)"},
      {"duplicate let", kHead + "    let m = 1.0\n    let m = 2.0\noutput p\n", 4, 9,
       "duplicate name 'm' (first defined at line 3)"},
      {"inconsistent indentation", kHead + "    mu <- Normal(0.0, 1.0)\n  nu <- Normal(0.0, 1.0)\noutput p\n", 4, 3,
       "bad indentation: expected 4 spaces like the program's first step, got 2"},
      {"indented outside a program", "object A : 1\n    mu <- Normal(0.0, 1.0)\n", 2, 5,
       "bad indentation: an indented line must be a step of a program"},
      {"tab indentation", kHead + "\tmu <- Normal(0.0, 1.0)\noutput p\n", 3, 1,
       "bad indentation: tab character (indent with spaces)"},
      {"step at top level", kHead + "mu <- Normal(0.0, 1.0)\noutput p\n", 2, 1,
       "program 'p' has no steps (expected indented steps)"},
      {"missing output", kHead + "    mu <- Normal(0.0, 1.0)\n\n# end\n", 3, 1,
       "missing 'output' declaration (expected 'output NAME' naming the program to fit)"},
      {"unknown output", kHead + "    mu <- Normal(0.0, 1.0)\noutput q\n", 4, 8,
       "unknown program 'q' in 'output'; the programs are: p"},
      {"duplicate output", kHead + "    mu <- Normal(0.0, 1.0)\noutput p\noutput p\n", 5, 1,
       "duplicate 'output' (first given at line 4)"},
      {"unknown object", "object A : 1\nprogram p : A -> B\n    mu <- Normal(0.0, 1.0)\noutput p\n", 2, 18,
       "unknown object 'B'"},
      {"bad object size", "object A : 1.5\n", 1, 12, "expected a positive integer size, got number '1.5'"},
      {"unknown declaration", "objekt A : 1\n", 1, 1, "expected 'object', 'program' or 'output', got 'objekt'"},
      {"bad step", kHead + "    mu = 1.0\noutput p\n", 3, 5,
       "expected a step ('NAME <- Family(...)', 'draw', 'observe', 'let', 'return' or 'data'), got 'mu'"},
      {"trailing tokens", kHead + "    mu <- Normal(0.0, 1.0) 2.0\noutput p\n", 3, 28,
       "expected end of line, got number '2.0'"},
      {"missing tilde", kHead + "    observe y = Normal(0.0, 1.0)\noutput p\n", 3, 15,
       "expected '~' or '<-' after the site name, got '='"},
      {"unknown object annotation", kHead + "    mu : B <- Normal(0.0, 1.0)\noutput p\n", 3, 10, "unknown object 'B'"},
      {"unexpected character", kHead + "    mu <- Normal(0.0, 1.0) @\noutput p\n", 3, 28, "unexpected character '@'"},
      {"number out of range", kHead + "    mu <- Normal(1e999, 1.0)\noutput p\n", 3, 18, "number '1e999' is out of range"},
      {"missing expression", kHead + "    let m = 1.0 +\noutput p\n", 3, 18,
       "expected an expression (a number, a name, a call or '('), got end of line"},
      {"deep parentheses", kHead + "    let m = " + deep + "\noutput p\n", 3, 13 + kMaxExprDepth,
       "expression nested too deeply (more than 100 levels)"},
      {"deep unary minus", kHead + "    let m = " + neg + "\noutput p\n", 3, 13 + kMaxExprDepth,
       "expression nested too deeply (more than 100 levels)"},
  };
}

void expect_error(const std::string& step_line, int line, int column, const std::string& message) {
  try {
    parse_program("object A : 1\nprogram p : A -> A\n    data g\n    a[3] <- Normal(0.0, 1.0)\n" + step_line + "output p\n");
    ADD_FAILURE() << "no error";
  } catch (const ProgramError& e) {
    EXPECT_EQ(e.message(), message);
    EXPECT_EQ(e.line(), line + 2);
    EXPECT_EQ(e.column(), column);
  }
}

TEST(Program, EachErrorHasItsMessageAndLocation) {
  for (const auto& c : error_cases()) {
    SCOPED_TRACE(c.what);
    try {
      parse_program(c.text, "m.qvr");
      ADD_FAILURE() << "no error";
    } catch (const ProgramError& e) {
      EXPECT_EQ(e.message(), c.message);
      EXPECT_EQ(e.line(), c.line);
      EXPECT_EQ(e.column(), c.column);
      EXPECT_EQ(e.filename(), "m.qvr");
      const std::string what = e.what();
      EXPECT_EQ(what.substr(0, what.find('\n')),
                "m.qvr:" + std::to_string(c.line) + ":" + std::to_string(c.column) + ": " + c.message);
    }
  }
}

TEST(Program, ErrorShowsTheLineAndACaret) {
  try {
    parse_program(kHead + "    mu <- Normla(0.0, 1.0)\noutput p\n", "m.qvr");
    FAIL() << "no error";
  } catch (const ProgramError& e) {
    EXPECT_STREQ(e.what(),
                 "m.qvr:3:11: unknown family 'Normla'; did you mean 'Normal'?\n"
                 "    mu <- Normla(0.0, 1.0)\n"
                 "          ^");
  }
}

TEST(Program, ShapesAndDataStepsParse) {
  const ProgramFile file = parse_program(
      "object School : 8\nprogram s : School -> School\n    data sigma\n    theta[J, 2] <- Normal(0.0, 1.0)\n"
      "    draw eta[School] ~ Normal(0.0, 1.0)\n    let t = sum(theta) + dot(eta, sigma) + pow(eta, 2.0)\n"
      "    return t\noutput s\n");
  const Program& p = file.output_program();
  EXPECT_EQ(p.steps[0].kind, Step::Kind::data);
  ASSERT_EQ(p.steps[1].shape.size(), 2u);
  EXPECT_EQ(p.steps[1].shape[0].name, "J");
  EXPECT_EQ(p.steps[1].shape[1].size, 2);
  EXPECT_EQ(p.steps[2].shape[0].name, "School");
}

TEST(Program, ObjectAnnotationsDeclareShapes) {
  // quivers writes a plate over an object as `v : Obj <- F(..)`.
  const ProgramFile file = parse_program(
      "object Obs : 30\nprogram normal_normal : Obs -> Obs\n    mu <- Normal(0.0, 1.0)\n"
      "    v : Obs <- Normal(mu, 1.0)\n    observe y : Obs <- Normal(mu, 1.0)\n    draw z : Obs ~ Normal(0.0, 1.0)\n"
      "    return mu\noutput normal_normal\n");
  const Program& p = file.output_program();
  ASSERT_EQ(p.steps.size(), 5u);
  for (int i : {1, 2, 3}) {
    ASSERT_EQ(p.steps[i].shape.size(), 1u) << i;
    EXPECT_EQ(p.steps[i].shape[0].name, "Obs");
  }
  EXPECT_EQ(p.steps[2].kind, Step::Kind::observe);
  EXPECT_EQ(p.steps[3].kind, Step::Kind::draw);
}

TEST(Program, IndexingParses) {
  const ProgramFile file = parse_program(
      "object A : 1\nprogram p : A -> A\n    data g\n    a[3] <- Normal(0.0, 1.0)\n    let b = a[g] * 2 + a[(g)][1]\n"
      "    return b\noutput p\n");
  const Expr& b = file.output_program().steps[2].value;
  EXPECT_EQ(to_string(b), "((a[g] * 2.0) + a[g][1.0])");
  EXPECT_EQ(b.args[0].args[0].kind, Expr::Kind::index);
  EXPECT_EQ(b.args[0].args[0].loc.column, 14);
  expect_error("    let b = a[g\n", 3, 16, "expected ']' to close the index, got end of line");
  const ProgramFile sliced = parse_program(
      "object A : 1\nprogram p : A -> A\n    data g\n    let b = g[2:g[1] - 1]\n    return b\noutput p\n");
  EXPECT_EQ(to_string(sliced.output_program().steps[1].value), "g[2.0:(g[1.0] - 1.0)]");
  EXPECT_EQ(sliced.output_program().steps[1].value.kind, Expr::Kind::slice);
  std::string chain = "    let b = ";
  for (int k = 0; k < 1001; ++k) chain += "1.0 + ";
  expect_error(chain + "1.0\n", 3, 6 * 1001 + 11, "expression too long (more than 1000 operators on one line)");
}

// ---- bounded fuzz run ---------------------------------------------------------------

std::vector<std::string> seed_corpus() {
  return {
      kRegression,
      "object A : 1\nprogram p : A -> A\n  a <- Normal(0, 1)\n  let b = -a * 2 - 3 / (a + 1e-1) + exp(log(abs(a)))\n"
      "  observe y ~ Normal(b, softplus(a))\n  return y\noutput p\n",
      "object A : 3\nprogram g : A -> A\n    data w\n    theta[3] <- Gamma(2.0, 1.0)\n"
      "    draw k ~ Poisson(sum(theta * w))\n    return k\noutput g\n",
      "# two programs\nobject A : 1\nprogram first : A -> A\n    a <- Beta(2.0, 3.0)\n    return a\n"
      "program second : A -> A\n    draw b ~ Exponential(1.0)\n    let c = sigmoid(b) / (1 + tanh(b))\n"
      "    observe z ~ Bernoulli(c)\n    return z\noutput second\n",
      "object T : 3\nprogram q : T -> T\n    data w\n    a : T <- Normal(0.0, 1.0)\n    let s = w[1:2]\n"
      "    let t = a[w]\n    let K = cholesky(add_diag(cov_exp_quad(w, 1.0, 2.0), 0.001))\n"
      "    observe y ~ Normal(t + dot(K, a) + sum(s), 1.0)\n    return y\noutput q\n",
      "object A : 2\nprogram m : A -> A\n        mu <- StudentT(3.0, 0.0, 2.5)\n        let v = pow(mu, 2.0) + log1p(expm1(mu))\n"
      "        observe y ~ LogNormal(v, 1.0)\n        return y\noutput m\n",
  };
}

std::string mutate(std::string s, std::mt19937& rng) {
  static const std::vector<std::string> dictionary = {
      "(", ")", "<-", "->", "~", "=", "+", "-", "*", "/", ",", ":", "[", "]", "#", "\n", "    ", "  ", "\t",
      "Normal", "Normla", "draw ", "observe ", "let ", "return ", "output ", "program ", "object ", "data ",
      "1e999", "0", "-1", "exp(", "sum(", "dot(", "x", "y", "(((((((", ")))))))", "[x]", "[J]", "[1]", "\r", "\xff", std::string(1, '\0')};
  const int edits = 1 + static_cast<int>(rng() % 2);
  for (int k = 0; k < edits; ++k) {
    const size_t pos = s.empty() ? 0 : rng() % (s.size() + 1);
    switch (rng() % 6) {
      case 0:  // delete a run
        if (!s.empty() && pos < s.size()) s.erase(pos, 1 + rng() % 8);
        break;
      case 1:  // replace a byte
        if (pos < s.size()) s[pos] = static_cast<char>(rng() % 256);
        break;
      case 2:  // insert a dictionary token
        s.insert(pos, dictionary[rng() % dictionary.size()]);
        break;
      case 3: {  // duplicate a slice
        const size_t from = s.empty() ? 0 : rng() % s.size();
        const std::string slice = s.substr(from, 1 + rng() % 40);
        s.insert(pos, slice);
        break;
      }
      case 4:  // truncate
        s.resize(pos);
        break;
      default:  // insert a printable byte
        s.insert(pos, 1, static_cast<char>(32 + rng() % 95));
        break;
    }
  }
  return s;
}

TEST(Program, FuzzedProgramsParseOrFailCleanly) {
  const auto corpus = seed_corpus();
  for (const auto& text : corpus) ASSERT_NO_THROW(parse_program(text)) << text;
  std::mt19937 rng(20261125);
  int parsed = 0, rejected = 0, built = 0;
  Data data("fuzz.json");
  data.set("x", at::tensor({0.5, -1.0, 2.0}, at::kDouble));
  data.set("y", at::tensor({1.0, 2.0, 3.0}, at::kDouble));
  data.set("w", at::tensor({1.0, 2.0, 3.0}, at::kDouble));
  data.set("z", at::tensor({1.0, 0.0, 1.0}, at::kDouble));
  data.set("J", at::scalar_tensor(int64_t{3}, at::kLong));
  constexpr int kInputs = 12000;
  for (int i = 0; i < kInputs; ++i) {
    std::string text = corpus[rng() % corpus.size()];
    const int rounds = rng() % 4 == 0 ? 3 : 1;
    for (int r = 0; r < rounds; ++r) text = mutate(text, rng);
    try {
      const ProgramFile file = parse_program(text, "fuzz.qvr");
      EXPECT_FALSE(file.output.empty());
      ++parsed;
      // A parsed program binds to data or fails with a program or data error.
      try {
        ProgramModel model(file, data);
        ++built;
      } catch (const ProgramError&) {
      } catch (const DataError&) {
      }
    } catch (const ProgramError& e) {
      ++rejected;
      // Every rejection is located inside the text and formatted on three lines.
      const int lines = static_cast<int>(std::count(text.begin(), text.end(), '\n')) + 1;
      EXPECT_GE(e.line(), 1);
      EXPECT_LE(e.line(), lines);
      EXPECT_GE(e.column(), 1);
      const std::string what = e.what();
      EXPECT_EQ(std::count(what.begin(), what.end(), '\n'), 2) << what;
      EXPECT_EQ(what.rfind("fuzz.qvr:", 0), 0u) << what;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "unexpected exception " << e.what() << " for input:\n" << text;
    } catch (...) {
      ADD_FAILURE() << "unexpected non-std exception for input:\n" << text;
    }
  }
  EXPECT_EQ(parsed + rejected, kInputs);
  // Both outcomes occur: the mutations reach past the first error and the parser
  // accepts many mutated but valid programs.
  EXPECT_GT(parsed, kInputs / 100);
  EXPECT_GT(rejected, kInputs / 4);
  EXPECT_GT(built, 0);
  std::cout << "[ fuzz     ] " << parsed << " parsed, " << rejected << " rejected, " << built << " models built\n";
}

// Token-level mutations keep most programs parseable, so that the model builder
// sees many valid programs with odd families, arguments and names.
std::string mutate_token(const std::string& s, std::mt19937& rng) {
  static const std::vector<std::string> words = {
      "Normal", "HalfNormal", "Gamma", "Beta", "Poisson", "Bernoulli", "Dirichlet", "Categorical",
      "MultivariateNormal", "Wishart", "LKJCholesky", "Uniform", "Exponential", "StudentT", "Binomial",
      "TruncatedNormal", "Pareto", "0", "-1", "1e-30", "2.5", "1e300", "3", "x", "y", "w", "z", "J", "mu",
      "sum", "dot", "exp", "log", "sqrt", "pow"};
  std::vector<std::pair<size_t, size_t>> spans;  // identifiers and numbers
  for (size_t i = 0; i < s.size();) {
    if (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '_' || s[i] == '.') {
      size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_' || s[j] == '.')) ++j;
      spans.emplace_back(i, j - i);
      i = j;
    } else {
      ++i;
    }
  }
  if (spans.empty()) return s;
  const auto [pos, len] = spans[rng() % spans.size()];
  std::string out = s;
  out.replace(pos, len, words[rng() % words.size()]);
  return out;
}

TEST(Program, TokenMutatedProgramsBindOrFailCleanly) {
  const auto corpus = seed_corpus();
  std::mt19937 rng(7);
  Data data("fuzz.json");
  data.set("x", at::tensor({0.5, -1.0, 2.0}, at::kDouble));
  data.set("y", at::tensor({1.0, 2.0, 3.0}, at::kDouble));
  data.set("w", at::tensor({1.0, 2.0, 3.0}, at::kDouble));
  data.set("z", at::tensor({1.0, 0.0, 1.0}, at::kDouble));
  data.set("J", at::scalar_tensor(int64_t{3}, at::kLong));
  int built = 0, rejected = 0;
  constexpr int kInputs = 10000;
  for (int i = 0; i < kInputs; ++i) {
    std::string text = corpus[rng() % corpus.size()];
    const int rounds = 1 + static_cast<int>(rng() % 2);
    for (int r = 0; r < rounds; ++r) text = mutate_token(text, rng);
    try {
      ProgramModel model(parse_program(text, "fuzz.qvr"), data);
      ++built;
    } catch (const ProgramError&) {
      ++rejected;
    } catch (const DataError&) {
      ++rejected;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "unexpected exception " << e.what() << " for input:\n" << text;
    }
  }
  EXPECT_EQ(built + rejected, kInputs);
  EXPECT_GT(built, kInputs / 50);
  EXPECT_GT(rejected, kInputs / 10);
  std::cout << "[ fuzz     ] " << built << " models built, " << rejected << " rejected\n";
}

}  // namespace
}  // namespace vguide::model
