#pragma once
// Random .qvr programs over the fused tape's families and functions, with data: the
// fused evaluator's and the direct step's tests run them (test_fused.cpp,
// test_direct_step.cpp).
#include <torch/torch.h>

#include <cmath>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "vguide/model/data.hpp"

namespace vguide::test {

using model::Data;

// Programs over the fused tape's families and functions: scalar and vector (J = 3)
// latents, lets, data (x real, g an index into the vectors) and 1-3 observed sites
// with data in their support. Latent-dependent expressions keep their values in a
// moderate range (heavy-tailed latents enter through tanh), so that both paths are
// finite and the comparison means something.
class ProgramGenerator {
 public:
  explicit ProgramGenerator(uint32_t seed) : rng_(seed) {}

  std::pair<std::string, Data> next(int number) {
    names_.clear();
    std::ostringstream p;
    const std::string name = "random" + std::to_string(number);
    p << "object Row : 1\nprogram " << name << " : Row -> Row\n    data x[N]\n    data g[N]\n";
    const int latents = 1 + pick(4);
    for (int i = 0; i < latents; ++i) {
      latent_line(p, "a" + std::to_string(i));
      if (pick(2) == 0) let_line(p, "l" + std::to_string(i));
    }
    const int observed = 1 + pick(3);
    Data data(name + ".json");
    data.set("N", torch::tensor(int64_t{kJ}));
    data.set("J", torch::tensor(int64_t{kJ}));
    std::vector<double> x;
    std::vector<int64_t> g;
    for (int i = 0; i < kJ; ++i) {
      x.push_back(uniform(-1.5, 1.5));
      g.push_back(1 + pick(kJ));
    }
    data.set("x", torch::tensor(x, torch::kDouble));
    data.set("g", torch::tensor(g, torch::kLong));
    std::string last;
    for (int i = 0; i < observed; ++i) {
      last = "y" + std::to_string(i);
      observe_line(p, last, data);
    }
    p << "    return " << last << "\n\noutput " << name << "\n";
    return {p.str(), data};
  }

 private:
  static constexpr int kJ = 3;
  struct Name {
    std::string name;
    char kind;  // 'r' real, 'p' positive, 'u' in (0, 1)
    bool vector;
    bool wild;  // heavy tails: enters expressions through tanh only
  };

  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  double uniform(double a, double b) { return std::uniform_real_distribution<double>(a, b)(rng_); }
  std::string number(double a, double b) {
    std::ostringstream s;
    s.precision(3);
    s << std::fixed << uniform(a, b);
    return s.str();
  }

  std::vector<const Name*> of_kind(char kind, bool vector_only) const {
    std::vector<const Name*> out;
    for (const auto& n : names_)
      if ((n.kind == kind || (kind == 'r' && n.wild)) && (!vector_only || n.vector)) out.push_back(&n);
    return out;
  }

  // A name as an expression of `kind`.
  std::string use(const Name& n, char kind) {
    if (n.wild) return kind == 'r' ? "tanh(" + n.name + ")" : "sigmoid(" + n.name + ")";
    return n.name;
  }

  std::string terminal(char kind, bool vector) {
    const auto names = of_kind(kind, vector);
    if (!names.empty() && pick(4) != 0) {
      const Name& n = *names[static_cast<size_t>(pick(static_cast<int>(names.size())))];
      if (n.vector && pick(3) == 0 && !n.wild) return n.name + "[g]";
      return use(n, kind);
    }
    if (vector && kind == 'r') return "x";
    if (vector) return kind == 'p' ? "exp(x)" : "sigmoid(x)";
    if (kind == 'r') return number(-2, 2);
    return kind == 'p' ? number(0.5, 2) : number(0.2, 0.8);
  }

  std::string expr(char kind, int depth, bool vector = false) {
    if (depth <= 0 || pick(3) == 0) return terminal(kind, vector);
    const int d = depth - 1;
    // One vector operand makes a vector; a scalar result may come from a reduction.
    const bool va = vector && pick(2) == 0, vb = vector && !va;
    if (kind == 'r') {
      switch (pick(10)) {
        case 0: return "(" + expr('r', d, va) + " + " + expr('r', d, vb) + ")";
        case 1: return "(" + expr('r', d, va) + " - " + expr('r', d, vb) + ")";
        case 2: return "(" + expr('r', d, va) + " * " + expr('r', d, vb) + ")";
        case 3: return "(" + expr('r', d, va) + " / " + expr('p', d, vb) + ")";
        case 4: return "-" + expr('r', d, vector);
        case 5: return "tanh(" + expr('r', d, vector) + ")";
        case 6: return "log(" + expr('p', d, vector) + ")";
        case 7: return vector ? "logit(" + expr('u', d, true) + ")" : "log1p(" + expr('p', d) + ")";
        case 8: return vector ? expr('r', d, true) : "0.3 * dot(" + expr('r', d, true) + ", " + expr('r', d, true) + ")";
        default: return vector ? "expm1(tanh(" + expr('r', d, true) + "))" : "0.5 * sum(" + expr('r', d, true) + ")";
      }
    }
    if (kind == 'p') {
      switch (pick(8)) {
        case 0: return "exp(tanh(" + expr('r', d, vector) + "))";
        case 1: return "softplus(" + expr('r', d, vector) + ")";
        case 2: return "(" + expr('p', d, va) + " * " + expr('p', d, vb) + ")";
        case 3: return "(" + expr('p', d, va) + " + " + expr('p', d, vb) + ")";
        case 4: return "sqrt(" + expr('p', d, vector) + ")";
        case 5: return "pow(" + expr('p', d, vector) + ", " + number(-1.5, 1.5) + ")";
        case 6: return "(0.5 + abs(" + expr('r', d, vector) + "))";
        default: return "(" + expr('p', d, va) + " / " + expr('p', d, vb) + ")";
      }
    }
    switch (pick(3)) {
      case 0: return "sigmoid(" + expr('r', d, vector) + ")";
      case 1: return "inv_logit(" + expr('r', d, vector) + ")";
      default: return "(" + expr('u', d, va) + " * " + expr('u', d, vb) + ")";
    }
  }

  void latent_line(std::ostringstream& p, const std::string& name) {
    const char kind = "rpu"[pick(3)];
    const bool vector = pick(3) == 0;
    p << "    " << name << (vector ? "[J]" : "") << " <- ";
    bool wild = false;
    if (kind == 'r') {
      switch (pick(4)) {
        case 0: p << "Normal(" << expr('r', 2) << ", " << expr('p', 2) << ")"; break;
        case 1: p << "Laplace(" << expr('r', 2) << ", " << expr('p', 2) << ")"; break;
        case 2: p << "Cauchy(" << expr('r', 1) << ", " << expr('p', 1) << ")", wild = true; break;
        default: p << "StudentT(" << expr('p', 1) << " + 2.0, " << expr('r', 1) << ", " << expr('p', 1) << ")", wild = true;
      }
    } else if (kind == 'p') {
      switch (pick(6)) {
        case 0: p << "HalfNormal(" << expr('p', 2) << ")"; break;
        case 1: p << "HalfCauchy(" << expr('p', 1) << ")", wild = true; break;
        case 2: p << "LogNormal(tanh(" << expr('r', 2) << "), " << expr('p', 2) << ")"; break;
        case 3: p << "Exponential(" << expr('p', 2) << ")"; break;
        case 4: p << "Gamma(" << expr('p', 2) << " + 1.0, " << expr('p', 2) << ")"; break;
        default: p << "InverseGamma(" << expr('p', 2) << " + 2.0, " << expr('p', 2) << ")"; wild = true;
      }
    } else {
      if (pick(2) == 0) p << "Beta(" << expr('p', 2) << " + 0.5, " << expr('p', 2) << " + 0.5)";
      else p << "Uniform(0.0, 1.0)";
    }
    p << "\n";
    names_.push_back({name, kind, vector, wild});
  }

  void let_line(std::ostringstream& p, const std::string& name) {
    const char kind = "rpu"[pick(3)];
    const bool vector = pick(2) == 0;
    p << "    let " << name << " = " << expr(kind, 3, vector) << "\n";
    names_.push_back({name, kind, vector, false});
  }

  void observe_line(std::ostringstream& p, const std::string& name, Data& data) {
    std::vector<double> y;
    auto fill = [&](double lo, double hi, bool integer) {
      for (int i = 0; i < kJ; ++i) y.push_back(integer ? std::floor(uniform(lo, hi + 1)) : uniform(lo, hi));
    };
    bool integer = false;
    p << "    observe " << name << " ~ ";
    switch (pick(12)) {
      case 0: p << "Normal(" << expr('r', 3) << ", " << expr('p', 2) << ")", fill(-2, 2, false); break;
      case 1: p << "StudentT(" << expr('p', 1) << " + 1.0, " << expr('r', 2) << ", " << expr('p', 2) << ")", fill(-2, 2, false); break;
      case 2: p << "Cauchy(" << expr('r', 2) << ", " << expr('p', 2) << ")", fill(-2, 2, false); break;
      case 3: p << "Laplace(" << expr('r', 2) << ", " << expr('p', 2) << ")", fill(-2, 2, false); break;
      case 4: p << "BernoulliLogit(" << expr('r', 3) << ")", fill(0, 1, true), integer = true; break;
      case 5: p << "Bernoulli(" << expr('u', 2) << ")", fill(0, 1, true), integer = true; break;
      case 6: p << "PoissonLog(tanh(" << expr('r', 3) << "))", fill(0, 4, true), integer = true; break;
      case 7: p << "Poisson(" << expr('p', 2) << ")", fill(0, 4, true), integer = true; break;
      case 8: p << "Gamma(" << expr('p', 2) << ", " << expr('p', 2) << ")", fill(0.1, 3, false); break;
      case 9: p << "LogNormal(" << expr('r', 2) << ", " << expr('p', 2) << ")", fill(0.1, 3, false); break;
      case 10: p << "Beta(" << expr('p', 2) << ", " << expr('p', 2) << ")", fill(0.05, 0.95, false); break;
      default: p << "Exponential(" << expr('p', 2) << ")", fill(0.1, 3, false); break;
    }
    p << "\n";
    if (integer) {
      std::vector<int64_t> k(y.begin(), y.end());
      data.set(name, torch::tensor(k, torch::kLong));
    } else {
      data.set(name, torch::tensor(y, torch::kDouble));
    }
  }

  std::mt19937 rng_;
  std::vector<Name> names_;
};

}  // namespace vguide::test
