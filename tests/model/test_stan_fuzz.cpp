// The Stan reader under a bounded fuzz run (the issue: "at least 10^4 mutants of the
// corpus in CTest: no crash, no hang, always a located error or a model").
//
// Seeds: every tests/model/stan/*.stan with its .json, plus the programs below (so
// the run does not depend on the corpus' size). Each mutant is a seed with 1-3 token
// edits (delete, duplicate, swap, replace or insert words of a Stan vocabulary and
// the seed's own names) or byte edits (delete, duplicate a slice, swap, flip to any
// byte including NUL and non-ASCII, insert, truncate), from a fixed std::mt19937_64.
//
// The contract checked for every mutant (stan_model.hpp):
//  - parse_stan returns, or throws ProgramError "fuzz.stan:LINE:COL: ..." with LINE
//    inside the text, then the source line and a caret line; nothing else escapes;
//  - a parsed program binds to the seed's data as a StanModel, or fails with
//    ProgramError (located in fuzz.stan), DataError, or std::invalid_argument naming
//    fuzz.stan;
//  - a built model's log_joint at S = 2 particles (each site at Stan's default start,
//    the support's bijector of uniform(-2, 2) unconstrained values) returns shape {2};
//    only ProgramError may escape.
// A failure is reported when its kind (stage, exception type, first line of the
// message, numbers dropped) first shows, with the mutant; the end of the run lists
// every kind with its count and its smallest mutant, shrunk. A mutant that takes
// longer than kSlowSeconds is a failure too. Mutants with `while` loops are built and
// evaluated like any other (the StanModel constructor evaluates the log joint once
// anyway): a loop that never ends must stop with a located error in reasonable time.
// One that runs past kHangSeconds makes the watchdog print it and end the process,
// and a crash signal prints the mutant before the process dies, so that neither a
// hang nor a crash needs a debugger to reproduce.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <cxxabi.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <ctime>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <typeinfo>
#include <vector>

#include "model_paths.hpp"
#include "vguide/bijector.hpp"
#include "vguide/guide.hpp"
#include "vguide/model/data.hpp"
#include "vguide/model/program.hpp"
#include "vguide/model/stan_model.hpp"

namespace vguide::model {
namespace {

constexpr int kMutants = 50000;
// A mutant normally takes well under 0.1 s of this process's CPU time (not wall
// time: under ctest -j on a loaded machine a fine mutant waited past the limit).
constexpr double kSlowSeconds = 5.0;
constexpr int kHangSeconds = 30;

struct Seed {
  std::string name;
  std::string text;
  std::string json;
};

// ---- embedded seeds ----------------------------------------------------------------

std::vector<Seed> embedded_seeds() {
  return {
      {"embedded_regression",
       R"(// Linear regression: transformed data, a transformed parameter, generated quantities.
data {
  int<lower=0> N;
  int<lower=1> K;
  matrix[N, K] X;
  vector[N] y;
}
transformed data {
  vector[N] y_std = (y - mean(y)) / sd(y);
}
parameters {
  real alpha;
  vector[K] b;
  real<lower=0> sigma;
}
transformed parameters {
  vector[N] mu = alpha + X * b;
}
model {
  alpha ~ normal(0, 10);
  b ~ normal(0, 2.5);
  sigma ~ exponential(1);
  y_std ~ normal(mu, sigma);
}
generated quantities {
  real y_rep = normal_rng(mu[1], sigma);
  real r2 = 1 - variance(y_std - mu) / variance(y_std);
}
)",
       R"({"N": 5, "K": 2, "X": [[1, 0.5], [0.2, -1], [-0.3, 0.8], [1.5, 0.1], [0, 2]],
           "y": [1.2, -0.4, 0.7, 2.1, 0.3]})"},
      {"embedded_hierarchical",
       R"(// Hierarchical model: user functions with loops and branches, Stan's non-centring.
functions {
  real asym_loss(array[] real x, real mu) {
    real acc = 0;
    for (i in 1:size(x)) {
      if (x[i] > mu)
        acc += x[i] - mu;
      else
        acc -= 0.5 * (x[i] - mu);
    }
    return acc;
  }
  vector shift(vector v, real d) {
    return v + d;
  }
}
data {
  int<lower=1> J;
  array[J] real y;
  array[J] real<lower=0> sigma;
  array[J] int<lower=1, upper=J> group;
}
parameters {
  real mu;
  real<lower=0> tau;
  vector<offset=mu, multiplier=tau>[J] theta;
}
model {
  mu ~ normal(0, 5);
  tau ~ cauchy(0, 5);
  theta ~ normal(mu, tau);
  for (j in 1:J) {
    y[j] ~ normal(theta[group[j]], sigma[j]);
  }
  target += -0.01 * asym_loss(y, mu);
  target += normal_lpdf(shift(theta, 1.0) | mu + 1, 10);
}
)",
       R"({"J": 4, "y": [28, 8, -3, 7], "sigma": [15, 10, 16, 11], "group": [1, 2, 3, 4]})"},
      {"embedded_constrained",
       R"(// Constrained parameters: simplex, Cholesky correlation factor, ordered, a matrix local.
data {
  int<lower=2> K;
  int<lower=0> N;
  array[N] int<lower=1, upper=K> z;
  array[N] vector[2] x;
}
parameters {
  simplex[K] theta;
  cholesky_factor_corr[2] L;
  vector<lower=0>[2] scale;
  vector[2] loc;
  ordered[2] cuts;
}
model {
  matrix[2, 2] L_Sigma = diag_pre_multiply(scale, L);
  theta ~ dirichlet(rep_vector(2.0, K));
  z ~ categorical(theta);
  L ~ lkj_corr_cholesky(2);
  scale ~ lognormal(0, 1);
  loc ~ normal(0, 3);
  cuts ~ normal(0, 5);
  x ~ multi_normal_cholesky(loc, L_Sigma);
}
generated quantities {
  matrix[2, 2] Omega = multiply_lower_tri_self_transpose(L);
  int draw = categorical_rng(theta);
}
)",
       R"({"K": 3, "N": 4, "z": [1, 3, 2, 3], "x": [[0.1, 0.2], [-1, 0.5], [0.3, -0.7], [1.1, 0.9]]})"},
      {"embedded_integers",
       R"(// Integer arithmetic, a bounded while loop, break/continue, ternaries, multi-indexes.
data {
  int<lower=1> N;
  vector[N] y;
  int<lower=0> M;
}
transformed data {
  int half = N %/% 2;
  int rest = N % 2;
  int steps = 0;
  int n = N;
  array[M] int idx;
  while (n > 1) {
    n = n % 2 == 0 ? n %/% 2 : 3 * n + 1;
    steps += 1;
    if (steps > 1000) break;
  }
  for (m in 1:M)
    idx[m] = 1 + (m - 1) % N;
}
parameters {
  real mu;
  real<lower=0, upper=10> sigma;
}
model {
  vector[N] r = y - mu;
  real acc = 0;
  for (i in 1:N) {
    if (i > half + rest) continue;
    acc += r[i] ^ 2;
  }
  target += -0.5 * acc / square(sigma) - (half + rest) * log(sigma);
  y[idx] ~ student_t(4, mu, sigma);
  mu ~ normal(steps, 10);
}
)",
       R"({"N": 7, "y": [0.5, 1.5, -0.2, 0.9, 2.2, 1.0, 0.1], "M": 9})"},
      {"embedded_discrete",
       R"(/* Discrete likelihoods in the pre-2.26 array syntax, a local vector filled in a
   loop, slices, _lpmf calls. */
data {
  int N;
  int y[N];
  real x[N];
  int<lower=0> trials[N];
}
parameters {
  real a;
  real b;
  real<lower=0> phi;
}
model {
  vector[N] eta;
  for (n in 1:N) eta[n] = a + b * x[n];
  a ~ normal(0, 1);
  b ~ normal(0, 1);
  phi ~ gamma(2, 0.5);
  y ~ binomial_logit(trials, eta);
  target += poisson_log_lpmf(trials | eta[1:N] * 0 + 1.5);
  target += neg_binomial_2_lpmf(y | exp(eta), phi);
}
generated quantities {
  int y_sim[N];
  for (n in 1:N) y_sim[n] = poisson_log_rng(a + b * x[n]);
}
)",
       R"({"N": 6, "y": [0, 3, 1, 4, 2, 5], "x": [-1, 0.5, 0, 1, -0.5, 1.5], "trials": [4, 6, 2, 5, 3, 8]})"},
  };
}

std::vector<Seed> corpus_seeds() {
  std::vector<Seed> out;
  namespace fs = std::filesystem;
  const fs::path dir = VGUIDE_TEST_STAN_DIR;
  if (!fs::is_directory(dir)) return out;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().extension() == ".stan") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  auto slurp = [](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  };
  for (const auto& f : files) {
    fs::path json = f;
    json.replace_extension(".json");
    out.push_back({f.stem().string(), slurp(f), fs::exists(json) ? slurp(json) : std::string("{}")});
  }
  return out;
}

// ---- mutations -----------------------------------------------------------------------

struct Span {
  size_t pos, len;
};

// A rough Stan tokenizer for choosing edit points: names, numbers, strings and
// operators (longest first); whitespace and comments are not tokens.
std::vector<Span> tokens_of(const std::string& s) {
  static const char* const ops[] = {"%/%", ".*=", "./=", "<-", "+=", "-=", "*=", "/=", ".*", "./",
                                    ".^",  "==",  "!=",  "<=", ">=", "&&", "||"};
  std::vector<Span> out;
  auto ident = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  for (size_t i = 0; i < s.size();) {
    const char c = s[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      ++i;
    } else if (s.compare(i, 2, "//") == 0) {
      while (i < s.size() && s[i] != '\n') ++i;
    } else if (ident(c)) {
      size_t j = i;
      const bool number = std::isdigit(static_cast<unsigned char>(c));
      while (j < s.size() && (ident(s[j]) || (number && s[j] == '.'))) ++j;
      out.push_back({i, j - i});
      i = j;
    } else if (c == '"') {
      size_t j = i + 1;
      while (j < s.size() && s[j] != '"' && s[j] != '\n') ++j;
      j = std::min(s.size(), j + 1);
      out.push_back({i, j - i});
      i = j;
    } else {
      size_t n = 1;
      for (const char* op : ops)
        if (s.compare(i, std::strlen(op), op) == 0) {
          n = std::strlen(op);
          break;
        }
      out.push_back({i, n});
      i += n;
    }
  }
  return out;
}

const std::vector<std::string>& vocabulary() {
  static const std::vector<std::string> words = {
      // blocks
      "functions", "data", "transformed data", "transformed", "parameters", "transformed parameters", "model",
      "generated quantities", "generated", "quantities",
      // types and bounds
      "int", "real", "vector", "row_vector", "matrix", "simplex", "ordered", "positive_ordered", "unit_vector",
      "cholesky_factor_corr", "cholesky_factor_cov", "corr_matrix", "cov_matrix", "array", "array[2]", "array[]",
      "vector[3]", "matrix[2, 2]", "<lower=0>", "<upper=1>", "<lower=-1, upper=1>", "<offset=1, multiplier=2>",
      "lower", "upper", "offset", "multiplier", "void", "complex", "tuple",
      // statements
      "~", "target +=", "target", "+=", "-=", "*=", "/=", ".*=", "./=", "=", ";", "<-", "for", "in", "for (i in 1:3)",
      "while", "if", "else", "if (1)", "break;", "continue;", "return", "return 0;", "print(\"p\", 1);",
      "reject(\"r\");", "fatal_error(\"f\");", "profile", "increment_log_prob", "T[0, ]",
      // operators and brackets
      "+", "-", "*", "/", "%", "%/%", "\\", "^", ".*", "./", ".^", "'", "!", "==", "!=", "<", "<=", ">", ">=", "&&",
      "||", "?", ":", ",", "|", "(", ")", "[", "]", "{", "}", "[:]", "[1]", "[2:]", "[:2]", "[1, 2]", "{1, 2}",
      "[1, 2]'", "((((", "))))", "\"s\"",
      // numbers
      "0", "1", "2", "3", "-1", "0.5", ".5", "1.", "1e-300", "1e300", "1e999", "-1e999", "2147483648",
      "99999999999999999999", "1e", "2i", "0x10", "1.5e+3", "100000",
      // library names
      "normal", "normal_lpdf", "normal_lupdf", "normal_rng", "exp", "log", "rep_vector", "rep_array", "rep_matrix",
      "sum", "mean", "sd", "variance", "softmax", "log_softmax", "log_sum_exp", "cholesky_decompose",
      "multi_normal_cholesky", "multi_normal", "lkj_corr_cholesky", "dirichlet", "categorical", "poisson_log",
      "bernoulli_logit", "binomial", "neg_binomial_2", "gamma", "beta", "uniform", "student_t", "cauchy", "exponential",
      "to_vector", "to_matrix", "to_array_1d", "segment", "head", "tail", "size", "num_elements", "rows", "cols",
      "inv_logit", "log1m", "pow", "square", "sqrt", "fabs", "diag_matrix", "diag_pre_multiply", "append_row",
      "append_col", "dot_product", "columns_dot_self", "quad_form", "inverse", "determinant", "log_determinant",
      "mdivide_left_tri_low", "sort_asc", "cumulative_sum", "linspaced_vector", "identity_matrix", "block", "col",
      "row", "min", "max", "fmin", "lchoose", "to_int", "not_a_number", "positive_infinity", "machine_precision",
      "no_such_function", "_lpdf", "_lpmf", "_rng", "_lupmf",
  };
  return words;
}

const std::set<std::string>& keywords() {
  static const std::set<std::string> words = {
      "functions", "data",  "transformed", "parameters", "model", "generated", "quantities", "for",    "in",
      "while",     "if",    "else",        "break",      "continue", "return", "print",     "reject", "target",
      "lower",     "upper", "offset",      "multiplier", "void",  "array",      "T"};
  return words;
}

const std::vector<std::string>& type_words() {
  static const std::vector<std::string> words = {
      "int",       "real",    "vector",           "row_vector",  "matrix",
      "simplex",   "ordered", "positive_ordered", "unit_vector", "cholesky_factor_corr",
      "cholesky_factor_cov",  "corr_matrix",      "cov_matrix"};
  return words;
}

// The seed's identifiers: its variables, and the functions it calls (a name
// followed by '('), to be swapped in for each other.
struct Names {
  std::vector<std::string> variables, functions, all;
};

Names names_of(const std::string& text) {
  Names out;
  const std::vector<Span> toks = tokens_of(text);
  for (size_t i = 0; i < toks.size(); ++i) {
    const char c = text[toks[i].pos];
    if (!std::isalpha(static_cast<unsigned char>(c)) && c != '_') continue;
    const std::string word = text.substr(toks[i].pos, toks[i].len);
    const auto& types = type_words();
    if (keywords().count(word) || std::find(types.begin(), types.end(), word) != types.end()) continue;
    const bool call = i + 1 < toks.size() && text.compare(toks[i + 1].pos, 1, "(") == 0;
    (call ? out.functions : out.variables).push_back(word);
  }
  for (auto* v : {&out.variables, &out.functions}) {
    std::sort(v->begin(), v->end());
    v->erase(std::unique(v->begin(), v->end()), v->end());
    out.all.insert(out.all.end(), v->begin(), v->end());
  }
  return out;
}

std::string random_word(std::mt19937_64& rng, const Names& names) {
  if (!names.all.empty() && rng() % 3 == 0) return names.all[rng() % names.all.size()];
  const auto& words = vocabulary();
  return words[rng() % words.size()];
}

// A word of the same sort as the token at `tokens[i]` (a number for a number, a
// variable for a variable, a function for a function, a type for a type, an operator
// of the same family), so that many mutants still parse and type-check and reach the
// checker's, the data binding's and the interpreter's deeper paths. Empty if the
// token has no such replacement (keywords, brackets, punctuation).
std::string like(const std::string& s, const std::vector<Span>& tokens, size_t i, const Names& names,
                 std::mt19937_64& rng) {
  // No size here is large enough to make a declaration allocate gigabytes (2^31 - 1
  // elements took 16 GB and a minute; 100000 x 100000 fails to allocate at once).
  static const std::vector<std::string> numbers = {"0",   "1",    "2",   "3",     "7",        "10",   "-1",
                                                   "0.5", "1e-8", "1e8", "1e300", "4.9e-324", "0.0",  "-0.0",
                                                   "100", "100000", "-100", "2e9", "2147483648", "1e999"};
  static const std::vector<std::vector<std::string>> families = {
      {"+", "-", "*", "/", "%", "%/%", "^", ".*", "./", ".^", "\\"},
      {"<=", ">=", "==", "!=", "&&", "||"},  // not '<' and '>', which also delimit bounds
      {"+=", "-=", "*=", "/=", ".*=", "./="}};
  static const std::vector<std::string> functions = {
      "exp",  "log",         "sqrt",     "square",        "inv_logit",  "log1p",     "fabs",        "sum",
      "mean", "sd",          "softmax",  "log_sum_exp",   "to_vector",  "size",      "rows",        "cols",
      "rep_vector", "rep_array", "cumulative_sum", "normal", "cauchy", "student_t", "gamma",    "lognormal",
      "exponential", "poisson", "poisson_log", "bernoulli_logit", "dirichlet", "categorical", "normal_lpdf",
      "normal_rng",  "uniform", "num_elements", "min",        "max",       "dot_self",    "pow"};
  const std::string token = s.substr(tokens[i].pos, tokens[i].len);
  const char c = token[0];
  if (std::isdigit(static_cast<unsigned char>(c)) || (c == '.' && token.size() > 1))
    return numbers[rng() % numbers.size()];
  if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
    static const std::vector<std::vector<std::string>> kinds = {
        {"int", "real"},
        {"vector", "row_vector", "simplex", "ordered", "positive_ordered", "unit_vector"},
        {"matrix", "cov_matrix", "corr_matrix", "cholesky_factor_corr", "cholesky_factor_cov"}};
    for (const auto& kind : kinds)
      if (std::find(kind.begin(), kind.end(), token) != kind.end()) return kind[rng() % kind.size()];
    if (keywords().count(token)) return "";
    const bool call = i + 1 < tokens.size() && s.compare(tokens[i + 1].pos, 1, "(") == 0;
    if (call) {
      if (!names.functions.empty() && rng() % 3 == 0) return names.functions[rng() % names.functions.size()];
      return functions[rng() % functions.size()];
    }
    if (!names.variables.empty() && rng() % 6 != 0) return names.variables[rng() % names.variables.size()];
    return functions[rng() % functions.size()];
  }
  for (const auto& family : families)
    if (std::find(family.begin(), family.end(), token) != family.end()) return family[rng() % family.size()];
  return "";
}

std::string mutate(std::string s, const Names& names, std::mt19937_64& rng) {
  const unsigned r = static_cast<unsigned>(rng() % 10);
  const int edits = r < 5 ? 1 : r < 8 ? 2 : 3;
  for (int k = 0; k < edits; ++k) {
    const unsigned op = static_cast<unsigned>(rng() % 24);
    if (op < 17) {  // token edits: many mutants stay close to a valid program
      const std::vector<Span> toks = tokens_of(s);
      if (toks.empty()) {
        s.insert(0, random_word(rng, names));
        continue;
      }
      const Span a = toks[rng() % toks.size()];
      switch (op) {
        case 0:
        case 1:
        case 2:
        case 3:
        case 4:
        case 5:
        case 6:
        case 7:
        case 8:
        case 9:  // replace a token by one of its sort (a few tries to find a token that has one)
          for (int tries = 0; tries < 8; ++tries) {
            const size_t i = rng() % toks.size();
            const std::string word = like(s, toks, i, names, rng);
            if (word.empty()) continue;
            s.replace(toks[i].pos, toks[i].len, word);
            break;
          }
          break;
        case 10:
        case 11:  // delete a token
          s.erase(a.pos, a.len);
          break;
        case 12:  // duplicate a token
          s.insert(a.pos, s.substr(a.pos, a.len) + " ");
          break;
        case 13: {  // swap two tokens (often neighbours)
          const size_t i = rng() % toks.size();
          const size_t j = rng() % 2 == 0 ? std::min(i + 1, toks.size() - 1) : rng() % toks.size();
          const Span x = toks[std::min(i, j)], y = toks[std::max(i, j)];
          if (x.pos == y.pos) break;
          const std::string tx = s.substr(x.pos, x.len), ty = s.substr(y.pos, y.len);
          s.replace(y.pos, y.len, tx);
          s.replace(x.pos, x.len, ty);
          break;
        }
        case 14:
        case 15:  // replace a token by any word
          s.replace(a.pos, a.len, random_word(rng, names));
          break;
        default: {  // insert a word before or after a token
          const size_t at = rng() % 2 == 0 ? a.pos : a.pos + a.len;
          s.insert(at, " " + random_word(rng, names) + " ");
          break;
        }
      }
      continue;
    }
    const size_t pos = s.empty() ? 0 : rng() % (s.size() + 1);
    switch (op) {
      case 17:  // delete a run of bytes
        if (pos < s.size()) s.erase(pos, 1 + rng() % 8);
        break;
      case 18: {  // duplicate a slice
        if (s.empty()) break;
        const size_t from = rng() % s.size();
        s.insert(pos, s.substr(from, 1 + rng() % 40));
        break;
      }
      case 19: {  // swap two bytes
        if (s.size() < 2) break;
        const size_t i = rng() % s.size();
        const size_t j = rng() % s.size();
        std::swap(s[i], s[j]);
        break;
      }
      case 20:  // flip a byte to any value (NUL, control, non-ASCII)
        if (pos < s.size()) s[pos] = static_cast<char>(rng() % 256);
        break;
      case 21: {  // insert an odd byte
        static const char odd[] = {'\0', '\r', '\t', '\x7f', '\x80', '\xc3', '\xa9', '\xff', '"', '#', '/', '*', '.'};
        s.insert(pos, 1, odd[rng() % sizeof(odd)]);
        break;
      }
      case 22:  // insert a printable byte
        s.insert(pos, 1, static_cast<char>(32 + rng() % 95));
        break;
      default:  // truncate
        s.resize(pos);
        break;
    }
  }
  return s;
}

// ---- the contract --------------------------------------------------------------------

std::string type_name(const std::exception& e) {
  int status = 0;
  char* d = abi::__cxa_demangle(typeid(e).name(), nullptr, nullptr, &status);
  std::string out = status == 0 && d ? d : typeid(e).name();
  std::free(d);
  return out;
}

std::string first_line(const std::string& s, size_t most = 160) {
  std::string line = s.substr(0, s.find('\n'));
  return line.size() > most ? line.substr(0, most) + "..." : line;
}

// Empty if `e` is a well-located error in `text`, else what is wrong with it.
std::string located_problem(const ProgramError& e, const std::string& text) {
  const std::string what = e.what();
  const int lines = static_cast<int>(std::count(text.begin(), text.end(), '\n')) + 1;
  const std::string prefix = "fuzz.stan:" + std::to_string(e.line()) + ":" + std::to_string(e.column()) + ": ";
  if (e.filename() != "fuzz.stan") return "the error names the file '" + e.filename() + "'";
  if (what.rfind(prefix, 0) != 0) return "what() does not start with '" + prefix + "'";
  if (e.line() < 1 || e.line() > lines)
    return "line " + std::to_string(e.line()) + " is outside the text's " + std::to_string(lines) + " lines";
  if (e.column() < 1) return "column " + std::to_string(e.column()) + " < 1";
  if (std::count(what.begin(), what.end(), '\n') != 2) return "what() is not three lines (message, source, caret)";
  return "";
}

// A failure kind without its numbers, so that one bug with different sizes or
// indexes is one kind.
std::string without_numbers(const std::string& s) {
  std::string out;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) out += c;
    else if (out.empty() || out.back() != '#') out += '#';
  return out;
}

struct Counts {
  int parsed = 0, rejected = 0, built = 0, build_rejected = 0, evaluated = 0, compiled = 0;
};

struct Failure {
  std::string kind;    ///< stage, exception type, first line of the message
  std::string detail;  ///< full message of the first occurrence
  std::string text;    ///< the smallest mutant showing it
  std::string seed;
  size_t seed_index = 0;
  int count = 0;
};

// Runs one mutant through parse, build and log_joint. Returns "" if the contract
// holds, else the failure's kind; `detail` gets the full message.
std::string run_one(const std::string& text, const Data& data, Counts* counts, std::string* detail) {
  std::shared_ptr<const StanProgram> program;
  try {
    program = parse_stan(text, "fuzz.stan");
  } catch (const ProgramError& e) {
    if (counts) ++counts->rejected;
    const std::string problem = located_problem(e, text);
    if (problem.empty()) return "";
    *detail = e.what();
    return "parse: badly located ProgramError: " + problem;
  } catch (const std::exception& e) {
    *detail = e.what();
    return "parse: " + type_name(e) + " escaped: " + first_line(e.what());
  } catch (...) {
    return "parse: a non-std exception escaped";
  }
  if (counts) ++counts->parsed;

  std::unique_ptr<StanModel> model;
  try {
    model = std::make_unique<StanModel>(program, data);
  } catch (const ProgramError& e) {
    if (counts) ++counts->build_rejected;
    const std::string problem = located_problem(e, text);
    if (problem.empty()) return "";
    *detail = e.what();
    return "build: badly located ProgramError: " + problem;
  } catch (const DataError&) {
    if (counts) ++counts->build_rejected;
    return "";
  } catch (const std::invalid_argument& e) {
    if (counts) ++counts->build_rejected;
    if (std::string(e.what()).find("fuzz.stan") != std::string::npos) return "";
    *detail = e.what();
    return "build: std::invalid_argument without the file name: " + first_line(e.what());
  } catch (const std::exception& e) {
    *detail = e.what();
    return "build: " + type_name(e) + " escaped: " + first_line(e.what());
  } catch (...) {
    return "build: a non-std exception escaped";
  }
  if (counts) ++counts->built;
  // A compiled log joint that disagrees with the interpreter is a tracing bug, even
  // though the model falls back to the interpreter.
  if (model->interpreted_because().find("differs from the interpreter") != std::string::npos) {
    *detail = model->interpreted_because();
    return "compile: " + without_numbers(model->interpreted_because());
  }
  if (counts && model->compiled()) ++counts->compiled;

  try {
    constexpr int64_t S = 2;
    at::Generator gen = at::detail::createCPUGenerator(17);
    SiteValues values;
    for (const auto& site : model->sites()) {
      const auto bijector = biject_to(site.support);
      std::vector<int64_t> shape{S};
      for (int64_t n : bijector->unconstrained_shape(site.shape)) shape.push_back(n);
      values[site.name] = bijector->forward(at::empty(shape, at::kDouble).uniform_(-2, 2, gen));
    }
    const at::Tensor lj = model->log_joint(vguide::particles(S, at::kDouble), values);
    if (counts) ++counts->evaluated;
    if (lj.sizes() != at::IntArrayRef{S}) {
      std::ostringstream s;
      s << "log_joint: shape " << lj.sizes() << " instead of [2]";
      return s.str();
    }
  } catch (const ProgramError& e) {
    const std::string problem = located_problem(e, text);
    if (problem.empty()) return "";
    *detail = e.what();
    return "log_joint: badly located ProgramError: " + problem;
  } catch (const std::exception& e) {
    *detail = e.what();
    return "log_joint: " + type_name(e) + " escaped: " + first_line(e.what());
  } catch (...) {
    return "log_joint: a non-std exception escaped";
  }
  return "";
}

// Greedy shrinking of a failing mutant: drop lines, then tokens, while the same
// failure kind shows.
std::string shrink(std::string text, const Data& data, const std::string& kind) {
  std::string detail;
  const std::string want = without_numbers(kind);
  auto same = [&](const std::string& t) { return without_numbers(run_one(t, data, nullptr, &detail)) == want; };
  auto pass = [&](auto pieces) {
    bool changed = false;
    for (size_t i = pieces(text).size(); i-- > 0;) {
      const auto ps = pieces(text);
      if (i >= ps.size()) continue;
      std::string t = text;
      t.erase(ps[i].pos, ps[i].len);
      if (same(t)) {
        text = std::move(t);
        changed = true;
      }
    }
    return changed;
  };
  auto lines = [](const std::string& s) {
    std::vector<Span> out;
    for (size_t i = 0; i < s.size();) {
      const size_t j = s.find('\n', i);
      const size_t end = j == std::string::npos ? s.size() : j + 1;
      out.push_back({i, end - i});
      i = end;
    }
    return out;
  };
  for (int round = 0; round < 4; ++round) {
    bool changed = pass(lines);
    changed |= pass(tokens_of);
    if (!changed) break;
  }
  return text;
}

// ---- hang and crash reporting ----------------------------------------------------------

// The mutant being run, for the watchdog and the crash handler (a fixed buffer the
// signal handler can write without allocating).
char g_current[1 << 16];
std::atomic<size_t> g_current_len{0};
std::atomic<int> g_current_index{-1};

void set_current(int index, const std::string& seed, const std::string& text) {
  std::string head = "StanFuzz: mutant #" + std::to_string(index) + " of seed '" + seed + "':\n";
  const size_t n = std::min(sizeof(g_current) - 1, head.size() + text.size());
  g_current_len = 0;
  std::memcpy(g_current, (head + text).data(), n);
  g_current_len = n;
  g_current_index = index;
}

void write_current() {
  const size_t n = g_current_len;
  if (n == 0) return;
  [[maybe_unused]] ssize_t r = ::write(2, "\n", 1);
  r = ::write(2, g_current, n);
  r = ::write(2, "\n[end of mutant]\n", 17);
}

extern "C" void on_crash(int sig) {
  static const char msg[] = "\nStanFuzz: fatal signal while running:";
  [[maybe_unused]] ssize_t r = ::write(2, msg, sizeof(msg) - 1);
  write_current();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

class CrashReporter {
 public:
  CrashReporter() {
    stack_.resize(1 << 16);
    stack_t ss{};
    ss.ss_sp = stack_.data();
    ss.ss_size = stack_.size();
    sigaltstack(&ss, &old_stack_);
    struct sigaction sa {};
    sa.sa_handler = on_crash;
    sa.sa_flags = SA_ONSTACK | SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &sa, &old_[i]);
  }
  ~CrashReporter() {
    for (size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &old_[i], nullptr);
    sigaltstack(&old_stack_, nullptr);
  }

 private:
  static constexpr std::array<int, 5> kSignals = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
  std::vector<char> stack_;
  stack_t old_stack_{};
  std::array<struct sigaction, 5> old_{};
};

// Ends the process (printing the mutant) if one mutant runs longer than kHangSeconds,
// so that a hang is reported with its input instead of as a CTest timeout.
class Watchdog {
 public:
  Watchdog()
      : thread_([this] {
          std::unique_lock<std::mutex> lock(mutex_);
          int seen = -2;
          auto since = std::chrono::steady_clock::now();
          while (!stop_) {
            cv_.wait_for(lock, std::chrono::milliseconds(200));
            const int now_index = g_current_index;
            const auto now = std::chrono::steady_clock::now();
            if (now_index != seen) {
              seen = now_index;
              since = now;
            } else if (now_index >= 0 && now - since > std::chrono::seconds(kHangSeconds)) {
              static const char msg[] =
                  "\nStanFuzz: FAILED: a mutant ran longer than the hang limit (kHangSeconds); ending the test:";
              [[maybe_unused]] ssize_t r = ::write(2, msg, sizeof(msg) - 1);
              write_current();
              std::_Exit(3);
            }
          }
        }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// ---- the test ----------------------------------------------------------------------------

// Empty if the seed parses, binds to its data and evaluates, else why not.
std::string seed_problem(const Seed& seed, const Data& data) {
  try {
    StanModel model(parse_stan(seed.text, "fuzz.stan"), data);
  } catch (const std::exception& e) {
    return e.what();
  }
  std::string detail;
  const std::string failure = run_one(seed.text, data, nullptr, &detail);
  return failure.empty() ? "" : failure + ": " + detail;
}

TEST(StanFuzz, EmbeddedSeedsParseAndBuild) {
  for (const Seed& seed : embedded_seeds()) {
    EXPECT_EQ(seed_problem(seed, parse_data(seed.json, "fuzz.json")), "") << seed.name << ":\n" << seed.text;
  }
}

TEST(StanFuzz, MutantsParseOrFailCleanly) {
  std::vector<Seed> seeds = corpus_seeds();
  const size_t corpus = seeds.size();
  for (Seed& s : embedded_seeds()) seeds.push_back(std::move(s));

  std::vector<Data> datas;
  std::vector<Names> names;
  size_t good_seeds = 0;
  for (const Seed& seed : seeds) {
    try {
      datas.push_back(parse_data(seed.json, "fuzz.json"));
    } catch (const DataError& e) {
      std::cout << "[ fuzz     ] seed " << seed.name << ": its data do not parse: " << e.what() << "\n";
      datas.emplace_back("fuzz.json");
    }
    names.push_back(names_of(seed.text));
    // A corpus program that does not build is the corpus test's failure; here it is
    // still a seed, only a less useful one.
    const std::string problem = seed_problem(seed, datas.back());
    if (problem.empty()) ++good_seeds;
    else std::cout << "[ fuzz     ] seed " << seed.name << " does not build: " << first_line(problem) << "\n";
  }
  EXPECT_GE(good_seeds * 4, seeds.size() * 3) << "most seeds must be valid programs";

  CrashReporter crash_reporter;
  Watchdog watchdog;
  std::mt19937_64 rng(20261125);
  Counts counts;
  std::map<std::string, Failure> failures;
  double slowest = 0;
  std::string slowest_text;
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < kMutants; ++i) {
    const size_t k = static_cast<size_t>(i) % seeds.size();
    std::string text = seeds[k].text;
    const int rounds = rng() % 10 == 0 ? 3 : 1;
    for (int r = 0; r < rounds; ++r) text = mutate(text, names[k], rng);

    set_current(i, seeds[k].name, text);
    const std::clock_t t0 = std::clock();
    std::string detail;
    std::string kind = run_one(text, datas[k], &counts, &detail);
    const double seconds = static_cast<double>(std::clock() - t0) / CLOCKS_PER_SEC;
    if (seconds > slowest) {
      slowest = seconds;
      slowest_text = text;
    }
    if (kind.empty() && seconds > kSlowSeconds)
      kind = "slow: a mutant took " + std::to_string(seconds) + " s (the limit is " + std::to_string(kSlowSeconds) + " s)";
    if (kind.empty()) continue;
    Failure& f = failures[without_numbers(kind)];
    // Reported when first seen, so that it shows even if a later mutant crashes or hangs.
    if (f.count == 0)
      ADD_FAILURE() << kind << "\n  mutant #" << i << " of seed '" << seeds[k].name << "':\n"
                    << text << "\n  message: " << detail;
    if (f.count++ == 0 || text.size() < f.text.size()) {
      f.kind = kind;
      f.detail = detail;
      f.text = text;
      f.seed = seeds[k].name;
      f.seed_index = k;
    }
  }
  g_current_index = -1;
  g_current_len = 0;
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  for (const auto& [key, f] : failures) {
    const bool slow = key.rfind("slow:", 0) == 0;
    std::cout << "[ fuzz     ] failure: " << f.kind << "\n  " << f.count << " mutant(s); the smallest (of seed '"
              << f.seed << (slow ? "'):\n" : "', shrunk):\n")
              << (slow ? f.text : shrink(f.text, datas[f.seed_index], f.kind)) << "\n";
  }

  EXPECT_EQ(counts.parsed + counts.rejected, kMutants);
  // Both outcomes occur, and the mutants reach the model builder and log_joint.
  EXPECT_GT(counts.parsed, kMutants / 100);
  EXPECT_GT(counts.rejected, kMutants / 4);
  EXPECT_GT(counts.built, kMutants / 100);
  EXPECT_GT(counts.evaluated, 0);
  std::cout << "[ fuzz     ] " << kMutants << " mutants of " << seeds.size() << " seeds (" << corpus
            << " from the corpus): " << counts.parsed << " parsed, " << counts.rejected << " rejected, "
            << counts.built << " models built (" << counts.build_rejected << " refused, " << counts.compiled << " compiled), " << counts.evaluated
            << " log joints evaluated; " << failures.size() << " failure kinds; " << total << " s, slowest mutant "
            << slowest << " s\n";
  if (slowest > 1.0) std::cout << "[ fuzz     ] the slowest mutant:\n" << slowest_text << "\n";
}

}  // namespace
}  // namespace vguide::model
