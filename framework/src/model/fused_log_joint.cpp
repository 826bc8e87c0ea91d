// The fused log joint: a tape of small kernels over double buffers with a hand-written
// reverse sweep, recorded in LibTorch's graph as one node. Every derivative mirrors
// what LibTorch's autograd gives the reference path (the same one-sided conventions
// at kinks: d|x|/dx = 0 at 0, xlogy's zero-coefficient rule, softplus's threshold),
// so the two paths agree to rounding; tests/model/test_fused.cpp checks that.
#include "fused_log_joint.hpp"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <limits>
#include <map>
#include <stdexcept>

namespace vguide::model::fused {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kLog2 = std::log(2.0);
const double kLogPi = std::log(M_PI);
const double kHalfLog2Pi = 0.5 * std::log(2.0 * M_PI);

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Numpy broadcasting of own dims (right-aligned); false if they do not fit.
bool broadcast(const std::vector<int64_t>& a, const std::vector<int64_t>& b, std::vector<int64_t>* out) {
  const size_t r = std::max(a.size(), b.size());
  out->assign(r, 1);
  for (size_t i = 0; i < r; ++i) {
    const int64_t x = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const int64_t y = i < r - b.size() ? 1 : b[i - (r - b.size())];
    if (x != y && x != 1 && y != 1) return false;
    (*out)[i] = x == 1 ? y : x;
  }
  return true;
}

// For each element of `out` (row-major), the offset of the element of `in` it reads
// under broadcasting; empty when the shapes are equal.
std::vector<int64_t> broadcast_map(const std::vector<int64_t>& in, const std::vector<int64_t>& out) {
  if (in == out) return {};
  const size_t r = out.size(), lead = r - in.size();
  std::vector<int64_t> stride(r, 0);  // in's strides aligned to out's dims, 0 where broadcast
  int64_t s = 1;
  for (size_t i = r; i-- > lead;) {
    stride[i] = in[i - lead] == 1 ? 0 : s;
    s *= in[i - lead];
  }
  const int64_t n = numel_of(out);
  std::vector<int64_t> map(static_cast<size_t>(n));
  std::vector<int64_t> idx(r, 0);
  int64_t offset = 0;
  for (int64_t j = 0; j < n; ++j) {
    map[static_cast<size_t>(j)] = offset;
    for (size_t d = r; d-- > 0;) {  // odometer
      offset += stride[d];
      if (++idx[d] < out[d]) break;
      offset -= stride[d] * out[d];
      idx[d] = 0;
    }
  }
  return map;
}

inline int64_t at_map(const std::vector<int64_t>& map, int64_t j) { return map.empty() ? j : map[static_cast<size_t>(j)]; }

// ---- special functions ----------------------------------------------------------

// psi(x): the recurrence up to x >= 6, then the asymptotic series (error < 1e-13);
// the reflection formula below 0. Poles give NaN or +-inf as LibTorch does.
double digamma(double x) {
  if (std::isnan(x)) return kNaN;
  if (x == 0) return std::signbit(x) ? kInf : -kInf;
  if (x < 0) {
    if (x == std::floor(x)) return kNaN;
    return digamma(1 - x) - M_PI / std::tan(M_PI * x);
  }
  double r = 0;
  while (x < 6) {
    r -= 1 / x;
    x += 1;
  }
  const double f = 1 / (x * x);
  return r + std::log(x) - 0.5 / x -
         f * (1.0 / 12 - f * (1.0 / 120 - f * (1.0 / 252 - f * (1.0 / 240 - f * (1.0 / 132)))));
}

// LibTorch's xlogy(x, y) and xlog1py(x, y): 0 where x == 0 (unless y is NaN).
double xlogy(double x, double y) { return std::isnan(y) ? kNaN : x == 0 ? 0 : x * std::log(y); }
double xlog1py(double x, double y) { return std::isnan(y) ? kNaN : x == 0 ? 0 : x * std::log1p(y); }

double softplus(double x) { return x > 20 ? x : std::log1p(std::exp(x)); }
double softplus_grad(double x) {
  if (x > 20) return 1;
  const double z = std::exp(x);
  return z / (z + 1);
}
double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }
double sign(double x) { return x > 0 ? 1 : x < 0 ? -1 : 0; }

bool positive_finite(double x) { return x >= 0 && x < kInf; }
bool count(double x) { return x >= 0 && x < kInf && std::floor(x) == x; }

// log density of `x` given the parameters `q`; with `d`, d[0] = d/dx and d[1 + i] =
// d/dq[i] (left untouched where the value is outside the support: -inf, no gradient).
double family_log_prob(Family f, double x, const double* q, double* d) {
  switch (f) {
    case Family::normal: {
      const double m = q[0], s = q[1], z = (x - m) / s;
      if (d) d[0] = -z / s, d[1] = z / s, d[2] = (z * z - 1) / s;
      return -0.5 * z * z - std::log(s) - kHalfLog2Pi;
    }
    case Family::half_normal: {
      if (!positive_finite(x)) return -kInf;
      const double s = q[0], z = x / s;
      if (d) d[0] = -z / s, d[1] = (z * z - 1) / s;
      return kLog2 - kHalfLog2Pi - std::log(s) - 0.5 * z * z;
    }
    case Family::log_normal: {
      if (!(x > 0 && x < kInf)) return -kInf;
      const double m = q[0], s = q[1], y = std::log(x), z = (y - m) / s;
      if (d) d[0] = (-z / s - 1) / x, d[1] = z / s, d[2] = (z * z - 1) / s;
      return -0.5 * z * z - std::log(s) - kHalfLog2Pi - y;
    }
    case Family::cauchy: {
      const double m = q[0], s = q[1], z = (x - m) / s, w = 1 + z * z;
      if (d) d[0] = -2 * z / (s * w), d[1] = 2 * z / (s * w), d[2] = -1 / s + 2 * z * z / (s * w);
      return -kLogPi - std::log(s) - std::log1p(z * z);
    }
    case Family::half_cauchy: {
      if (!positive_finite(x)) return -kInf;
      const double s = q[0], z = x / s, w = 1 + z * z;
      if (d) d[0] = -2 * z / (s * w), d[1] = -1 / s + 2 * z * z / (s * w);
      return kLog2 - kLogPi - std::log(s) - std::log1p(z * z);
    }
    case Family::student_t: {
      const double nu = q[0], m = q[1], s = q[2], z = (x - m) / s, w = z * z / nu;
      if (d) {
        d[0] = -(nu + 1) * z / (nu * s * (1 + w));
        d[2] = -d[0];
        d[3] = -1 / s + (nu + 1) * z * z / (nu * s * (1 + w));
        d[1] = 0.5 * digamma(0.5 * (nu + 1)) - 0.5 * digamma(0.5 * nu) - 0.5 / nu - 0.5 * std::log1p(w) +
               0.5 * (nu + 1) * w / (nu * (1 + w));
      }
      return std::lgamma(0.5 * (nu + 1)) - std::lgamma(0.5 * nu) - 0.5 * (std::log(nu) + kLogPi) - std::log(s) -
             0.5 * (nu + 1) * std::log1p(w);
    }
    case Family::laplace: {
      const double m = q[0], s = q[1], a = std::abs(x - m);
      if (d) d[0] = -sign(x - m) / s, d[1] = sign(x - m) / s, d[2] = -1 / s + a / (s * s);
      return -kLog2 - std::log(s) - a / s;
    }
    case Family::exponential: {
      if (!positive_finite(x)) return -kInf;
      const double r = q[0];
      if (d) d[0] = -r, d[1] = 1 / r - x;
      return std::log(r) - r * x;
    }
    case Family::gamma: {
      if (!positive_finite(x)) return -kInf;
      const double a = q[0], r = q[1];
      if (d) d[0] = (a - 1) / x - r, d[1] = xlogy(a - 1 != 0, x) + std::log(r) - digamma(a), d[2] = a / r - x;
      return xlogy(a - 1, x) + a * std::log(r) - r * x - std::lgamma(a);
    }
    case Family::inverse_gamma: {
      if (!(x > 0 && x < kInf)) return -kInf;
      const double a = q[0], r = q[1];
      if (d) d[0] = -(a + 1) / x + r / (x * x), d[1] = std::log(r) - digamma(a) - std::log(x), d[2] = a / r - 1 / x;
      return a * std::log(r) - std::lgamma(a) - (a + 1) * std::log(x) - r / x;
    }
    case Family::beta: {
      if (!(x >= 0 && x <= 1)) return -kInf;
      const double a = q[0], b = q[1], psi_ab = d ? digamma(a + b) : 0;
      if (d) {
        d[0] = (a - 1) / x - (b - 1) / (1 - x);
        d[1] = xlogy(a - 1 != 0, x) - digamma(a) + psi_ab;
        d[2] = xlog1py(b - 1 != 0, -x) - digamma(b) + psi_ab;
      }
      return xlogy(a - 1, x) + xlog1py(b - 1, -x) - (std::lgamma(a) + std::lgamma(b) - std::lgamma(a + b));
    }
    case Family::uniform: {
      const double lo = q[0], hi = q[1];
      if (!(x >= lo && x <= hi)) return -kInf;
      if (d) d[0] = 0, d[1] = 1 / (hi - lo), d[2] = -1 / (hi - lo);
      return -std::log(hi - lo);
    }
    case Family::bernoulli: {
      if (!(x == 0 || x == 1)) return -kInf;
      const double p = q[0];
      if (d) d[0] = 0, d[1] = x / p - (1 - x) / (1 - p);
      return xlogy(x, p) + xlog1py(1 - x, -p);
    }
    case Family::bernoulli_logit: {
      if (!(x == 0 || x == 1)) return -kInf;
      const double l = q[0];
      if (d) d[0] = 0, d[1] = x - softplus_grad(l);
      return x * l - softplus(l);
    }
    case Family::poisson: {
      if (!count(x)) return -kInf;
      const double r = q[0];
      if (d) d[0] = 0, d[1] = x / r - 1;
      return xlogy(x, r) - r - std::lgamma(x + 1);
    }
    case Family::poisson_log: {
      if (!count(x)) return -kInf;
      const double l = q[0], e = std::exp(l);
      if (d) d[0] = 0, d[1] = x - e;
      return x * l - e - std::lgamma(x + 1);
    }
  }
  return kNaN;
}

struct FamilyInfo {
  const char* name;
  Family family;
  int params;
};

const std::vector<FamilyInfo>& families() {
  static const std::vector<FamilyInfo> table = {
      {"Normal", Family::normal, 2},         {"HalfNormal", Family::half_normal, 1},
      {"LogNormal", Family::log_normal, 2},  {"Cauchy", Family::cauchy, 2},
      {"HalfCauchy", Family::half_cauchy, 1}, {"StudentT", Family::student_t, 3},
      {"Laplace", Family::laplace, 2},       {"Exponential", Family::exponential, 1},
      {"Gamma", Family::gamma, 2},           {"InverseGamma", Family::inverse_gamma, 2},
      {"Beta", Family::beta, 2},             {"Uniform", Family::uniform, 2},
      {"Bernoulli", Family::bernoulli, 1},   {"BernoulliLogit", Family::bernoulli_logit, 1},
      {"Poisson", Family::poisson, 1},       {"PoissonLog", Family::poisson_log, 1},
  };
  return table;
}

int param_count(Family f) {
  for (const auto& e : families())
    if (e.family == f) return e.params;
  return -1;
}

bool has_args(Op op, int count) {
  switch (op) {
    case Op::constant:
    case Op::latent: return count == 0;
    case Op::add:
    case Op::sub:
    case Op::mul:
    case Op::div:
    case Op::pow:
    case Op::dot: return count == 2;
    case Op::collect:
    case Op::density: return false;  // built by collect() and density()
    default: return count == 1;
  }
}

}  // namespace

bool family_of(const std::string& name, Family* family) {
  for (const auto& e : families())
    if (name == e.name) {
      *family = e.family;
      return true;
    }
  return false;
}

bool function_of(const std::string& name, Op* op) {
  static const std::map<std::string, Op> table = {
      {"exp", Op::exp},     {"log", Op::log},     {"sigmoid", Op::sigmoid}, {"inv_logit", Op::sigmoid},
      {"softplus", Op::softplus}, {"abs", Op::abs}, {"sqrt", Op::sqrt},   {"log1p", Op::log1p},
      {"expm1", Op::expm1}, {"tanh", Op::tanh},   {"logit", Op::logit},     {"sum", Op::sum},
  };
  auto it = table.find(name);
  if (it == table.end()) return false;
  *op = it->second;
  return true;
}

// ---- building --------------------------------------------------------------------

int Tape::add(Node node) {
  node.numel = numel_of(node.shape);
  if (node.op != Op::constant) work_ += node.op == Op::dot ? node.numel * node.inner : node.numel;
  nodes_.push_back(std::move(node));
  return static_cast<int>(nodes_.size()) - 1;
}

int Tape::constant(const at::Tensor& own) {
  Node n;
  n.op = Op::constant;
  n.shape = own.sizes().vec();
  const at::Tensor flat = own.to(at::kDouble).contiguous().reshape({-1});
  n.values.assign(flat.data_ptr<double>(), flat.data_ptr<double>() + flat.numel());
  return add(std::move(n));
}

int Tape::latent(int k, const std::vector<int64_t>& shape) {
  Node n;
  n.op = Op::latent;
  n.latent = k;
  n.shape = shape;
  num_latents_ = std::max(num_latents_, k + 1);
  return add(std::move(n));
}

int Tape::unary(Op op, int a) {
  if (!has_args(op, 1) || op == Op::index || a < 0) return -1;
  Node n;
  n.op = op;
  n.a = a;
  if (op != Op::sum) n.shape = shape(a);
  return add(std::move(n));
}

int Tape::binary(Op op, int a, int b) {
  if (!has_args(op, 2) || a < 0 || b < 0) return -1;
  Node n;
  n.op = op;
  n.a = a;
  n.b = b;
  std::vector<int64_t> full;
  if (!broadcast(shape(a), shape(b), &full)) return -1;
  if (op == Op::dot) {
    if (full.empty()) return -1;  // two scalars
    n.inner = full.back();
    n.shape.assign(full.begin(), full.end() - 1);
  } else {
    n.shape = full;
  }
  n.map_a = broadcast_map(shape(a), full);
  n.map_b = broadcast_map(shape(b), full);
  return add(std::move(n));
}

int Tape::index(int a, const std::vector<int64_t>& positions, const std::vector<int64_t>& index_shape) {
  if (a < 0 || shape(a).empty() || numel_of(index_shape) != static_cast<int64_t>(positions.size())) return -1;
  const std::vector<int64_t>& base = shape(a);
  const int64_t rows = base[0], row_size = numel_of(std::vector<int64_t>(base.begin() + 1, base.end()));
  Node n;
  n.op = Op::index;
  n.a = a;
  n.shape = index_shape;
  n.shape.insert(n.shape.end(), base.begin() + 1, base.end());
  for (int64_t p : positions) {
    if (p < 0 || p >= rows) return -1;
    for (int64_t j = 0; j < row_size; ++j) n.map_a.push_back(p * row_size + j);
  }
  return add(std::move(n));
}

bool Tape::set_constant(int node, const double* values, int64_t count) {
  if (node < 0 || node >= static_cast<int>(nodes_.size())) return false;
  Node& n = nodes_[static_cast<size_t>(node)];
  if (n.op != Op::constant || count != n.numel) return false;
  std::copy(values, values + n.numel, n.values.begin());
  return true;
}

bool Tape::set_positions(int node, const std::vector<int64_t>& positions) {
  if (node < 0 || node >= static_cast<int>(nodes_.size())) return false;
  Node& n = nodes_[static_cast<size_t>(node)];
  if (n.op != Op::index) return false;
  const std::vector<int64_t>& base = shape(n.a);
  const int64_t rows = base[0], row_size = numel_of(std::vector<int64_t>(base.begin() + 1, base.end()));
  if (static_cast<int64_t>(positions.size()) * row_size != static_cast<int64_t>(n.map_a.size())) return false;
  for (int64_t p : positions)
    if (p < 0 || p >= rows) return false;
  auto out = n.map_a.begin();
  for (int64_t p : positions)
    for (int64_t j = 0; j < row_size; ++j) *out++ = p * row_size + j;
  return true;
}

int Tape::collect(const std::vector<int>& sources, const std::vector<int64_t>& offsets,
                  const std::vector<double>& constants, const std::vector<int64_t>& shape) {
  const size_t n = sources.size();
  if (offsets.size() != n || constants.size() != n || numel_of(shape) != static_cast<int64_t>(n)) return -1;
  for (size_t j = 0; j < n; ++j) {
    const int src = sources[j];
    if (src < -1 || src >= static_cast<int>(nodes_.size())) return -1;
    if (src >= 0 && (offsets[j] < 0 || offsets[j] >= nodes_[static_cast<size_t>(src)].numel)) return -1;
  }
  Node node;
  node.op = Op::collect;
  node.shape = shape;
  node.sources = sources;
  node.map_a = offsets;
  node.values = constants;
  return add(std::move(node));
}

int Tape::density(Family family, int value, const std::vector<int>& params) {
  if (value < 0 || static_cast<int>(params.size()) != param_count(family)) return -1;
  std::vector<int64_t> full = shape(value);
  for (int p : params) {
    std::vector<int64_t> next;
    if (p < 0 || !broadcast(full, shape(p), &next)) return -1;
    full = next;
  }
  if (full.empty()) return -1;
  Node node;
  node.op = Op::density;
  node.family = family;
  node.sources.push_back(value);
  node.sources.insert(node.sources.end(), params.begin(), params.end());
  for (int a : node.sources) node.arg_maps.push_back(broadcast_map(shape(a), full));
  node.inner = full.back();
  node.shape.assign(full.begin(), full.end() - 1);
  const int out = add(std::move(node));
  work_ += numel_of(full);
  return out;
}

bool Tape::sum_term(int node, double scale) {
  if (node < 0 || node >= static_cast<int>(nodes_.size())) return false;
  sums_.push_back({node, scale});
  work_ += nodes_[static_cast<size_t>(node)].numel;
  return true;
}

bool Tape::reject_if_nan(int node) {
  if (node < 0 || node >= static_cast<int>(nodes_.size())) return false;
  guards_.push_back(node);
  work_ += nodes_[static_cast<size_t>(node)].numel;
  return true;
}

void Tape::rewind(const Mark& m) {
  nodes_.resize(std::min(nodes_.size(), m.nodes));
  terms_.resize(std::min(terms_.size(), m.terms));
  sums_.resize(std::min(sums_.size(), m.sums));
  guards_.resize(std::min(guards_.size(), m.guards));
  work_ = m.work;
  num_latents_ = 0;
  for (const Node& node : nodes_)
    if (node.op == Op::latent) num_latents_ = std::max(num_latents_, node.latent + 1);
}

bool Tape::term(Family family, int value, const std::vector<int>& params, bool rows) {
  if (value < 0 || static_cast<int>(params.size()) != param_count(family)) return false;
  std::vector<int64_t> full = shape(value);
  for (int p : params) {
    if (p < 0) return false;
    std::vector<int64_t> next;
    if (!broadcast(full, shape(p), &next)) return false;
    full = next;
  }
  Term t;
  t.family = family;
  t.value = value;
  t.rows = rows;
  t.params = params;
  t.numel = numel_of(full);
  t.maps.push_back(broadcast_map(shape(value), full));
  for (int p : params) t.maps.push_back(broadcast_map(shape(p), full));
  work_ += t.numel;
  terms_.push_back(std::move(t));
  return true;
}

// ---- evaluation -------------------------------------------------------------------

void Tape::evaluate(int64_t S, const std::vector<const double*>& latents, double* log_joint,
                    const std::vector<double*>* grads, double row_weight) const {
  // The buffers hold every node's values for every particle: a long tape (a Stan
  // program's loops, unrolled) at many particles (the final ELBO's 1000 draws) runs
  // in blocks of particles, each within about 32 MB.
  int64_t per_particle = 1;
  for (const Node& node : nodes_)
    if (node.op != Op::constant && node.op != Op::latent) per_particle += node.numel;
  const int64_t block = std::max<int64_t>(1, (int64_t{4} << 20) / per_particle);
  if (S <= block) {
    evaluate_block(S, latents, log_joint, grads, row_weight);
    return;
  }
  std::vector<int64_t> latent_numel(latents.size(), 0);
  for (const Node& node : nodes_)
    if (node.op == Op::latent) latent_numel[static_cast<size_t>(node.latent)] = node.numel;
  for (int64_t p0 = 0; p0 < S; p0 += block) {
    const int64_t n = std::min(block, S - p0);
    std::vector<const double*> in(latents.size());
    std::vector<double*> out;
    for (size_t k = 0; k < latents.size(); ++k) in[k] = latents[k] + p0 * latent_numel[k];
    if (grads)
      for (size_t k = 0; k < grads->size(); ++k) out.push_back((*grads)[k] + p0 * latent_numel[k]);
    evaluate_block(n, in, log_joint + p0, grads ? &out : nullptr, row_weight);
  }
}

void Tape::evaluate_block(int64_t S, const std::vector<const double*>& latents, double* log_joint,
                          const std::vector<double*>* grads, double row_weight) const {
  const size_t n = nodes_.size();
  // Scratch kept per thread (a small model's step is a few microseconds, of which
  // a dozen fresh allocations here were a tenth).
  thread_local std::vector<int64_t> offset;
  thread_local std::vector<const double*> value;
  thread_local std::vector<double*> adj;
  thread_local std::vector<std::vector<double>> latent_adjoint;  // latents have no slot in `adjoint`
  thread_local std::vector<char> rejected;
  // Values: constants and latents in place, the rest in one buffer.
  offset.assign(n, -1);
  int64_t total = 0;
  for (size_t i = 0; i < n; ++i)
    if (nodes_[i].op != Op::constant && nodes_[i].op != Op::latent) {
      offset[i] = total;
      total += S * nodes_[i].numel;
    }
  // Scratch kept per thread: buffers of a fresh allocation this size would be mapped
  // and zeroed page by page on every call (malloc hands large blocks to mmap).
  thread_local std::vector<double> buffer, adjoint;
  if (buffer.size() < static_cast<size_t>(total)) buffer.resize(static_cast<size_t>(total));
  value.assign(n, nullptr);
  auto out_of = [&](size_t i) { return buffer.data() + offset[i]; };
  // Particle p's block of node i (constants have one block).
  auto block = [&](int i, int64_t p) {
    const Node& node = nodes_[static_cast<size_t>(i)];
    return value[static_cast<size_t>(i)] + (node.op == Op::constant ? 0 : p * node.numel);
  };

  for (size_t i = 0; i < n; ++i) {
    const Node& node = nodes_[i];
    switch (node.op) {
      case Op::constant: value[i] = node.values.data(); continue;
      case Op::latent: value[i] = latents.at(static_cast<size_t>(node.latent)); continue;
      default: break;
    }
    double* out = out_of(i);
    value[i] = out;
    const int64_t m = node.numel;
    if (node.op == Op::add || node.op == Op::sub || node.op == Op::mul || node.op == Op::div || node.op == Op::pow) {
      for (int64_t p = 0; p < S; ++p) {
        const double* a = block(node.a, p);
        const double* b = block(node.b, p);
        double* o = out + p * m;
        for (int64_t j = 0; j < m; ++j) {
          const double x = a[at_map(node.map_a, j)], y = b[at_map(node.map_b, j)];
          switch (node.op) {
            case Op::add: o[j] = x + y; break;
            case Op::sub: o[j] = x - y; break;
            case Op::mul: o[j] = x * y; break;
            case Op::div: o[j] = x / y; break;
            default: o[j] = std::pow(x, y); break;
          }
        }
      }
      continue;
    }
    if (node.op == Op::density) {
      double q[3];
      const size_t k = node.sources.size() - 1;
      for (int64_t p = 0; p < S; ++p)
        for (int64_t j = 0; j < m; ++j) {
          double sum = 0;
          for (int64_t e = j * node.inner; e < (j + 1) * node.inner; ++e) {
            for (size_t i = 0; i < k; ++i) q[i] = block(node.sources[i + 1], p)[at_map(node.arg_maps[i + 1], e)];
            sum += family_log_prob(node.family, block(node.sources[0], p)[at_map(node.arg_maps[0], e)], q, nullptr);
          }
          out[p * m + j] = sum;
        }
      continue;
    }
    if (node.op == Op::collect) {
      for (int64_t p = 0; p < S; ++p)
        for (int64_t j = 0; j < m; ++j) {
          const int src = node.sources[static_cast<size_t>(j)];
          out[p * m + j] = src < 0 ? node.values[static_cast<size_t>(j)] : block(src, p)[node.map_a[static_cast<size_t>(j)]];
        }
      continue;
    }
    if (node.op == Op::dot) {
      for (int64_t p = 0; p < S; ++p) {
        const double* a = block(node.a, p);
        const double* b = block(node.b, p);
        for (int64_t j = 0; j < m; ++j) {
          double s = 0;
          for (int64_t k = j * node.inner; k < (j + 1) * node.inner; ++k)
            s += a[at_map(node.map_a, k)] * b[at_map(node.map_b, k)];
          out[p * m + j] = s;
        }
      }
      continue;
    }
    const int64_t am = nodes_[static_cast<size_t>(node.a)].numel;
    for (int64_t p = 0; p < S; ++p) {
      const double* a = block(node.a, p);
      double* o = out + p * m;
      if (node.op == Op::sum) {
        double s = 0;
        for (int64_t j = 0; j < am; ++j) s += a[j];
        o[0] = s;
        continue;
      }
      if (node.op == Op::index) {
        for (int64_t j = 0; j < m; ++j) o[j] = a[node.map_a[static_cast<size_t>(j)]];
        continue;
      }
      for (int64_t j = 0; j < m; ++j) {
        const double x = a[j];
        double y;
        switch (node.op) {
          case Op::neg: y = -x; break;
          case Op::exp: y = std::exp(x); break;
          case Op::log: y = std::log(x); break;
          case Op::sigmoid: y = sigmoid(x); break;
          case Op::softplus: y = softplus(x); break;
          case Op::abs: y = std::abs(x); break;
          case Op::sqrt: y = std::sqrt(x); break;
          case Op::log1p: y = std::log1p(x); break;
          case Op::expm1: y = std::expm1(x); break;
          case Op::tanh: y = std::tanh(x); break;
          default: y = std::log(x) - std::log1p(-x); break;  // logit, as the reference writes it
        }
        o[j] = y;
      }
    }
  }

  // Terms, with their derivatives when a gradient is wanted.
  const bool backward = grads != nullptr;
  if (backward) adjoint.assign(static_cast<size_t>(total), 0.0);
  adj.assign(n, nullptr);
  if (backward) {
    for (size_t i = 0; i < n; ++i)
      if (offset[i] >= 0) adj[i] = adjoint.data() + offset[i];
    if (latent_adjoint.size() < n) latent_adjoint.resize(n);
    for (size_t i = 0; i < n; ++i)
      if (nodes_[i].op == Op::latent) {
        latent_adjoint[i].assign(static_cast<size_t>(S * nodes_[i].numel), 0.0);
        adj[i] = latent_adjoint[i].data();
      }
  }
  for (int64_t p = 0; p < S; ++p) log_joint[p] = 0;
  double q[3], d[4];
  for (const Term& t : terms_) {
    const size_t k = t.params.size();
    const auto map_of = [&](size_t i) { return t.maps[i].empty() ? nullptr : t.maps[i].data(); };
    const int64_t* map[4] = {map_of(0), k > 0 ? map_of(1) : nullptr, k > 1 ? map_of(2) : nullptr,
                             k > 2 ? map_of(3) : nullptr};
    const int inputs[4] = {t.value, k > 0 ? t.params[0] : -1, k > 1 ? t.params[1] : -1, k > 2 ? t.params[2] : -1};
    for (int64_t p = 0; p < S; ++p) {
      const double* in[4] = {nullptr, nullptr, nullptr, nullptr};
      double* grad[4] = {nullptr, nullptr, nullptr, nullptr};  // null: a constant, no gradient
      for (size_t i = 0; i <= k; ++i) {
        in[i] = block(inputs[i], p);
        const Node& node = nodes_[static_cast<size_t>(inputs[i])];
        if (backward && node.op != Op::constant) grad[i] = adj[static_cast<size_t>(inputs[i])] + p * node.numel;
      }
      const double w = t.rows ? row_weight : 1.0;
      double sum = 0;
      for (int64_t j = 0; j < t.numel; ++j) {
        for (size_t i = 0; i < k; ++i) q[i] = in[i + 1][map[i + 1] ? map[i + 1][j] : j];
        const double xv = in[0][map[0] ? map[0][j] : j];
        if (!backward) {
          sum += family_log_prob(t.family, xv, q, nullptr);
          continue;
        }
        d[0] = d[1] = d[2] = d[3] = 0;
        sum += family_log_prob(t.family, xv, q, d);
        for (size_t i = 0; i <= k; ++i)
          if (grad[i]) grad[i][map[i] ? map[i][j] : j] += w == 1.0 ? d[i] : w * d[i];
      }
      log_joint[p] += w == 1.0 ? sum : w * sum;
    }
  }
  for (const Sum& s : sums_) {
    const Node& node = nodes_[static_cast<size_t>(s.node)];
    const bool to_node = backward && node.op != Op::constant;
    for (int64_t p = 0; p < S; ++p) {
      const double* v = block(s.node, p);
      double total = 0;
      for (int64_t j = 0; j < node.numel; ++j) total += v[j];
      log_joint[p] += s.scale * total;
      if (!to_node) continue;
      double* g = adj[static_cast<size_t>(s.node)] + p * node.numel;
      for (int64_t j = 0; j < node.numel; ++j) g[j] += s.scale;
    }
  }
  // Particles with a NaN in a guarded node are rejected: -inf, and (below) no gradient.
  rejected.assign(static_cast<size_t>(S), 0);
  bool any_rejected = false;
  for (int g : guards_) {
    const int64_t m = nodes_[static_cast<size_t>(g)].numel;
    for (int64_t p = 0; p < S; ++p) {
      const double* v = block(g, p);
      for (int64_t j = 0; j < m && !rejected[static_cast<size_t>(p)]; ++j)
        if (std::isnan(v[j])) rejected[static_cast<size_t>(p)] = any_rejected = true;
    }
  }
  for (int64_t p = 0; p < S; ++p)
    if (rejected[static_cast<size_t>(p)]) log_joint[p] = -kInf;
  if (!backward) return;

  // The reverse sweep.
  for (size_t i = n; i-- > 0;) {
    const Node& node = nodes_[i];
    if (node.op == Op::constant || node.op == Op::latent) continue;
    if (node.op == Op::density) {
      double q[3], d[4];
      const size_t k = node.sources.size() - 1;
      for (int64_t p = 0; p < S; ++p) {
        const double* g = adj[i] + p * node.numel;
        for (int64_t e = 0; e < node.numel * node.inner; ++e) {
          for (size_t a = 0; a < k; ++a) q[a] = block(node.sources[a + 1], p)[at_map(node.arg_maps[a + 1], e)];
          d[0] = d[1] = d[2] = d[3] = 0;
          family_log_prob(node.family, block(node.sources[0], p)[at_map(node.arg_maps[0], e)], q, d);
          for (size_t a = 0; a <= k; ++a) {
            const Node& in = nodes_[static_cast<size_t>(node.sources[a])];
            if (in.op == Op::constant) continue;
            adj[static_cast<size_t>(node.sources[a])][p * in.numel + at_map(node.arg_maps[a], e)] +=
                g[e / node.inner] * d[a];
          }
        }
      }
      continue;
    }
    if (node.op == Op::collect) {
      for (int64_t p = 0; p < S; ++p) {
        const double* g = adj[i] + p * node.numel;
        for (int64_t j = 0; j < node.numel; ++j) {
          const int src = node.sources[static_cast<size_t>(j)];
          if (src < 0 || nodes_[static_cast<size_t>(src)].op == Op::constant) continue;
          adj[static_cast<size_t>(src)][p * nodes_[static_cast<size_t>(src)].numel + node.map_a[static_cast<size_t>(j)]] += g[j];
        }
      }
      continue;
    }
    const bool to_a = nodes_[static_cast<size_t>(node.a)].op != Op::constant;
    const bool to_b = node.b >= 0 && nodes_[static_cast<size_t>(node.b)].op != Op::constant;
    const int64_t m = node.numel;
    const int64_t am = nodes_[static_cast<size_t>(node.a)].numel;
    const int64_t bm = node.b >= 0 ? nodes_[static_cast<size_t>(node.b)].numel : 0;
    for (int64_t p = 0; p < S; ++p) {
      const double* g = adj[i] + p * m;
      const double* o = value[i] + p * m;
      const double* a = block(node.a, p);
      double* ga = to_a ? adj[static_cast<size_t>(node.a)] + p * am : nullptr;
      if (node.op == Op::add || node.op == Op::sub || node.op == Op::mul || node.op == Op::div ||
          node.op == Op::pow || node.op == Op::dot) {
        const double* b = block(node.b, p);
        double* gb = to_b ? adj[static_cast<size_t>(node.b)] + p * bm : nullptr;
        const int64_t len = node.op == Op::dot ? m * node.inner : m;
        for (int64_t j = 0; j < len; ++j) {
          const double gj = node.op == Op::dot ? g[j / node.inner] : g[j];
          const int64_t ia = at_map(node.map_a, j), ib = at_map(node.map_b, j);
          const double x = a[ia], y = b[ib];
          double dx, dy;
          switch (node.op) {
            case Op::add: dx = 1, dy = 1; break;
            case Op::sub: dx = 1, dy = -1; break;
            case Op::mul:
            case Op::dot: dx = y, dy = x; break;
            case Op::div: dx = 1 / y, dy = -x / (y * y); break;
            default:  // pow, with LibTorch's masks at a zero exponent and a zero base
              dx = y == 0 ? 0 : y * std::pow(x, y - 1);
              dy = (x == 0 && y >= 0) ? 0 : std::pow(x, y) * std::log(x);
              break;
          }
          if (ga) ga[ia] += gj * dx;
          if (gb) gb[ib] += gj * dy;
        }
        continue;
      }
      if (!ga) continue;
      if (node.op == Op::sum) {
        for (int64_t j = 0; j < am; ++j) ga[j] += g[0];
        continue;
      }
      if (node.op == Op::index) {
        for (int64_t j = 0; j < m; ++j) ga[node.map_a[static_cast<size_t>(j)]] += g[j];
        continue;
      }
      for (int64_t j = 0; j < m; ++j) {
        const double x = a[j], y = o[j];
        double dx;
        switch (node.op) {
          case Op::neg: dx = -1; break;
          case Op::exp: dx = y; break;
          case Op::log: dx = 1 / x; break;
          case Op::sigmoid: dx = y * (1 - y); break;
          case Op::softplus: dx = softplus_grad(x); break;
          case Op::abs: dx = sign(x); break;
          case Op::sqrt: dx = 0.5 / y; break;
          case Op::log1p: dx = 1 / (1 + x); break;
          case Op::expm1: dx = y + 1; break;
          case Op::tanh: dx = 1 - y * y; break;
          default: dx = 1 / x + 1 / (1 - x); break;  // logit
        }
        ga[j] += g[j] * dx;
      }
    }
  }
  for (size_t i = 0; i < n; ++i) {
    const Node& node = nodes_[i];
    if (node.op != Op::latent) continue;
    double* out = grads->at(static_cast<size_t>(node.latent));
    for (int64_t p = 0; p < S; ++p) {
      if (any_rejected && rejected[static_cast<size_t>(p)]) continue;
      for (int64_t j = p * node.numel; j < (p + 1) * node.numel; ++j) out[j] += adj[i][j];
    }
  }
}

// ---- the autograd node --------------------------------------------------------------

namespace {

using torch::autograd::variable_list;

class FusedLogJointBackward final : public torch::autograd::Node {
 public:
  variable_list apply(variable_list&& grads) override {
    const at::Tensor& go = grads.at(0);
    variable_list out(inputs_.size());
    if (!go.defined()) return out;
    if (at::GradMode::is_enabled()) {
      // A graph of the gradient is wanted (create_graph): differentiate the LibTorch
      // reference, which knows its own second derivatives.
      std::vector<at::Tensor> wanted;
      std::vector<size_t> which;
      for (size_t k = 0; k < inputs_.size(); ++k)
        if (inputs_[k].requires_grad()) {
          wanted.push_back(inputs_[k]);
          which.push_back(k);
        }
      const at::Tensor lj = reference_(inputs_);
      const variable_list g = torch::autograd::grad({lj}, wanted, {go.to(lj.scalar_type())}, /*retain_graph=*/true,
                                                    /*create_graph=*/true, /*allow_unused=*/true);
      for (size_t i = 0; i < which.size(); ++i) out[which[i]] = g[i];
      return out;
    }
    const int64_t S = go.numel();
    std::vector<double> gp(static_cast<size_t>(S));
    const at::Tensor gc = go.contiguous();
    if (gc.scalar_type() == at::kDouble) std::copy(gc.data_ptr<double>(), gc.data_ptr<double>() + S, gp.begin());
    else if (gc.scalar_type() == at::kFloat) std::copy(gc.data_ptr<float>(), gc.data_ptr<float>() + S, gp.begin());
    else {
      const at::Tensor gd = gc.to(at::kDouble);
      std::copy(gd.data_ptr<double>(), gd.data_ptr<double>() + S, gp.begin());
    }
    for (size_t k = 0; k < inputs_.size(); ++k) {
      if (!inputs_[k].requires_grad()) continue;
      const std::vector<double>& d = gradients_[k];
      const int64_t m = S == 0 ? 0 : static_cast<int64_t>(d.size()) / S;
      at::Tensor r = at::empty(inputs_[k].sizes(), inputs_[k].options().requires_grad(false));
      if (r.scalar_type() == at::kDouble) {
        double* rp = r.data_ptr<double>();
        for (int64_t p = 0; p < S; ++p)
          for (int64_t j = 0; j < m; ++j) rp[p * m + j] = gp[p] * d[static_cast<size_t>(p * m + j)];
      } else {
        float* rp = r.data_ptr<float>();
        for (int64_t p = 0; p < S; ++p)
          for (int64_t j = 0; j < m; ++j) rp[p * m + j] = static_cast<float>(gp[p] * d[static_cast<size_t>(p * m + j)]);
      }
      out[k] = r;
    }
    return out;
  }
  std::string name() const override { return "FusedLogJointBackward"; }
  void release_variables() override {
    inputs_.clear();
    gradients_.clear();
  }

  std::vector<at::Tensor> inputs_;
  std::vector<std::vector<double>> gradients_;
  Reference reference_;
};

}  // namespace

at::Tensor log_joint(const std::shared_ptr<const Tape>& tape, int64_t S, const std::vector<at::Tensor>& latents,
                     at::ScalarType dtype, Reference reference) {
  if (static_cast<int>(latents.size()) != tape->num_latents())
    throw std::logic_error("fused log joint: expected " + std::to_string(tape->num_latents()) + " latents, got " +
                           std::to_string(latents.size()));
  bool needs_grad = false;
  if (at::GradMode::is_enabled())
    for (const auto& t : latents) needs_grad = needs_grad || t.requires_grad();

  // The latents as contiguous doubles (float32 ones copied; double ones read in place).
  std::vector<at::Tensor> held;
  std::vector<std::vector<double>> copies(latents.size());
  std::vector<const double*> in(latents.size());
  for (size_t k = 0; k < latents.size(); ++k) {
    const at::Tensor c = latents[k].contiguous();  // no op when it already is
    if (c.scalar_type() == at::kDouble) {
      in[k] = c.data_ptr<double>();
      held.push_back(c);
    } else {
      const float* f = c.data_ptr<float>();
      copies[k].assign(f, f + c.numel());
      in[k] = copies[k].data();
    }
  }
  std::vector<double> lj(static_cast<size_t>(S));
  std::vector<std::vector<double>> gradients;
  std::vector<double*> grads;
  if (needs_grad) {
    gradients.resize(latents.size());
    for (size_t k = 0; k < latents.size(); ++k) {
      gradients[k].assign(static_cast<size_t>(latents[k].numel()), 0.0);
      grads.push_back(gradients[k].data());
    }
  }
  tape->evaluate(S, in, lj.data(), needs_grad ? &grads : nullptr);

  at::Tensor out = at::empty({S}, at::TensorOptions().dtype(dtype));
  if (dtype == at::kDouble) {
    std::copy(lj.begin(), lj.end(), out.data_ptr<double>());
  } else {
    float* o = out.data_ptr<float>();
    for (int64_t p = 0; p < S; ++p) o[p] = static_cast<float>(lj[static_cast<size_t>(p)]);
  }
  if (needs_grad) {
    auto node = std::shared_ptr<FusedLogJointBackward>(new FusedLogJointBackward(), torch::autograd::deleteNode);
    node->set_next_edges(torch::autograd::collect_next_edges(at::TensorList(latents)));
    node->inputs_ = latents;
    node->gradients_ = std::move(gradients);
    node->reference_ = std::move(reference);
    torch::autograd::set_history(out, node);
  }
  return out;
}

}  // namespace vguide::model::fused
