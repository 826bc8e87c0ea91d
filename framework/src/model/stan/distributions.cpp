// Stan's distributions over particle-batched tensors (library.hpp): each one's type
// rule beside its log density, summed over every element to (P,).
#include "library.hpp"

#include <ATen/ATen.h>

#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <stdexcept>

#include "library_detail.hpp"
#include "vguide/model/distribution.hpp"

namespace vguide::model::stan {

namespace {

using namespace detail;

// ---- distributions ------------------------------------------------------------------------
using Elementwise = std::function<at::Tensor(const std::vector<at::Tensor>&)>;

// Every argument flattened to (P, K) or (P, 1), broadcast, the log density summed.
DistributionDef elementwise(bool discrete, int params, Elementwise f) {
  DistributionDef d;
  d.discrete = discrete;
  d.min_params = d.max_params = params;
  d.type = [discrete](const std::vector<Type>& a) -> std::optional<Type> {
    for (size_t i = 0; i < a.size(); ++i) {
      const Type& t = a[i];
      if (t.base == Base::void_) return std::nullopt;
      if (t.array_dims > 1 || (t.array_dims == 1 && t.own_dims() > 0)) return std::nullopt;  // scalars, 1-d, vectors
      if (t.base == Base::matrix) return std::nullopt;
      if (i == 0 && discrete && t.base != Base::int_) return std::nullopt;
    }
    return kReal;
  };
  d.log_density = [f](const std::vector<Val>& a, RunContext& c) {
    std::vector<at::Tensor> args;
    int64_t K = 1;
    for (const auto& v : a) {
      args.push_back(flat(v, c.dtype));
      const int64_t k = args.back().size(1);
      if (k != 1) {
        require(K == 1 || K == k, "the sizes of the vectorised arguments differ (" + std::to_string(K) + " and " +
                                      std::to_string(k) + ")");
        K = k;
      }
    }
    return f(args).sum(1);
  };
  return d;
}

at::Tensor in_support(const at::Tensor& ok, const at::Tensor& lp) {
  return at::where(ok, lp, at::full_like(lp, -INFINITY));
}

std::map<std::string, DistributionDef> make_distributions() {
  std::map<std::string, DistributionDef> d;
  d["normal"] = elementwise(false, 2, [](const std::vector<at::Tensor>& a) {
    const at::Tensor z = (a[0] - a[1]) / a[2];
    return -0.5 * z * z - at::log(a[2]) - kLogSqrtTwoPi;
  });
  {
    DistributionDef std_normal = elementwise(false, 0, [](const std::vector<at::Tensor>& a) {
      return -0.5 * a[0] * a[0] - kLogSqrtTwoPi;
    });
    d["std_normal"] = std_normal;
  }
  d["beta_binomial"] = elementwise(true, 3, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &y = a[0], &n = a[1], &al = a[2], &be = a[3];
    return in_support((y >= 0) & (y <= n), lchoose(n, y) + lbeta(y + al, n - y + be) - lbeta(al, be));
  });
  d["student_t"] = elementwise(false, 3, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &nu = a[1], z = (a[0] - a[2]) / a[3];
    return at::lgamma((nu + 1) / 2) - at::lgamma(nu / 2) - 0.5 * (at::log(nu) + kLogPi) - at::log(a[3]) -
           (nu + 1) / 2 * at::log1p(z * z / nu);
  });
  d["cauchy"] = elementwise(false, 2, [](const std::vector<at::Tensor>& a) {
    const at::Tensor z = (a[0] - a[1]) / a[2];
    return -kLogPi - at::log(a[2]) - at::log1p(z * z);
  });
  d["double_exponential"] = elementwise(false, 2, [](const std::vector<at::Tensor>& a) {
    return -std::log(2.0) - at::log(a[2]) - at::abs(a[0] - a[1]) / a[2];
  });
  d["logistic"] = elementwise(false, 2, [](const std::vector<at::Tensor>& a) {
    const at::Tensor z = (a[0] - a[1]) / a[2];
    return -z - at::log(a[2]) - 2 * at::softplus(-z);
  });
  d["gumbel"] = elementwise(false, 2, [](const std::vector<at::Tensor>& a) {
    const at::Tensor z = (a[0] - a[1]) / a[2];
    return -at::log(a[2]) - z - at::exp(-z);
  });
  d["lognormal"] = elementwise(false, 2, [](const std::vector<at::Tensor>& a) {
    const at::Tensor ly = at::log(a[0]), z = (ly - a[1]) / a[2];
    return in_support(a[0] > 0, -0.5 * z * z - at::log(a[2]) - kLogSqrtTwoPi - ly);
  });
  d["gamma"] = elementwise(false, 2, [](const std::vector<at::Tensor>& a) {
    return in_support(a[0] >= 0, a[1] * at::log(a[2]) - at::lgamma(a[1]) + (a[1] - 1) * at::log(a[0]) - a[2] * a[0]);
  });
  d["inv_gamma"] = elementwise(false, 2, [](const std::vector<at::Tensor>& a) {
    return in_support(a[0] > 0, a[1] * at::log(a[2]) - at::lgamma(a[1]) - (a[1] + 1) * at::log(a[0]) - a[2] / a[0]);
  });
  d["exponential"] = elementwise(false, 1, [](const std::vector<at::Tensor>& a) {
    return in_support(a[0] >= 0, at::log(a[1]) - a[1] * a[0]);
  });
  d["chi_square"] = elementwise(false, 1, [](const std::vector<at::Tensor>& a) {
    const at::Tensor h = a[1] / 2;
    return in_support(a[0] >= 0, (h - 1) * at::log(a[0]) - a[0] / 2 - h * std::log(2.0) - at::lgamma(h));
  });
  d["beta"] = elementwise(false, 2, [](const std::vector<at::Tensor>& a) {
    return in_support((a[0] >= 0) & (a[0] <= 1),
                      (a[1] - 1) * at::log(a[0]) + (a[2] - 1) * at::log1p(-a[0]) - lbeta(a[1], a[2]));
  });
  d["uniform"] = elementwise(false, 2, [](const std::vector<at::Tensor>& a) {
    return in_support((a[0] >= a[1]) & (a[0] <= a[2]), -at::log(a[2] - a[1]) + 0 * a[0]);
  });
  d["weibull"] = elementwise(false, 2, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &y = a[0], &k = a[1], &s = a[2];
    return in_support(y >= 0, at::log(k) - at::log(s) + (k - 1) * (at::log(y) - at::log(s)) - at::pow(y / s, k));
  });
  d["pareto"] = elementwise(false, 2, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &y = a[0], &ymin = a[1], &alpha = a[2];
    return in_support(y >= ymin, at::log(alpha) + alpha * at::log(ymin) - (alpha + 1) * at::log(y));
  });
  d["bernoulli"] = elementwise(true, 1, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &y = a[0], &th = a[1];
    return in_support((y == 0) | (y == 1), at::where(y == 1, at::log(th), at::log1p(-th)));
  });
  d["bernoulli_logit"] = elementwise(true, 1, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &y = a[0], &al = a[1];
    return in_support((y == 0) | (y == 1), at::where(y == 1, log_inv_logit(al), log1m_inv_logit(al)));
  });
  d["binomial"] = elementwise(true, 2, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &y = a[0], &n = a[1], &th = a[2];
    const at::Tensor lp = lchoose(n, y) + at::where(y > 0, y * at::log(th), at::zeros_like(th)) +
                          at::where(n - y > 0, (n - y) * at::log1p(-th), at::zeros_like(th));
    return in_support((y >= 0) & (y <= n), lp);
  });
  d["binomial_logit"] = elementwise(true, 2, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &y = a[0], &n = a[1], &al = a[2];
    return in_support((y >= 0) & (y <= n), lchoose(n, y) + y * log_inv_logit(al) + (n - y) * log1m_inv_logit(al));
  });
  d["poisson"] = elementwise(true, 1, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &y = a[0], &l = a[1];
    return in_support(y >= 0, at::where(y > 0, y * at::log(l), at::zeros_like(l)) - l - at::lgamma(y + 1));
  });
  d["poisson_log"] = elementwise(true, 1, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &y = a[0], &al = a[1];
    return in_support(y >= 0, y * al - at::exp(al) - at::lgamma(y + 1));
  });
  d["neg_binomial_2"] = elementwise(true, 2, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &y = a[0], &mu = a[1], &ph = a[2];
    const at::Tensor lsum = at::log(mu + ph);
    return in_support(y >= 0, at::lgamma(y + ph) - at::lgamma(y + 1) - at::lgamma(ph) + y * (at::log(mu) - lsum) +
                                  ph * (at::log(ph) - lsum));
  });
  d["neg_binomial_2_log"] = elementwise(true, 2, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &y = a[0], &eta = a[1], &ph = a[2];
    const at::Tensor lph = at::log(ph), lsum = at::logaddexp(eta, lph);
    return in_support(y >= 0, at::lgamma(y + ph) - at::lgamma(y + 1) - at::lgamma(ph) + y * (eta - lsum) +
                                  ph * (lph - lsum));
  });
  d["neg_binomial"] = elementwise(true, 2, [](const std::vector<at::Tensor>& a) {
    const at::Tensor &y = a[0], &al = a[1], &be = a[2];
    return in_support(y >= 0, at::lgamma(y + al) - at::lgamma(y + 1) - at::lgamma(al) +
                                  al * (at::log(be) - at::log1p(be)) - y * at::log1p(be));
  });
  // Categorical outcomes: y an int or int array (1-based), the probabilities a vector.
  const auto categorical = [](bool logit) {
    DistributionDef c;
    c.discrete = true;
    c.min_params = c.max_params = 1;
    c.type = [](const std::vector<Type>& a) -> std::optional<Type> {
      if (a[0].base != Base::int_ || a[0].array_dims > 1 || !(a[1] == kVector)) return std::nullopt;
      return kReal;
    };
    c.log_density = [logit](const std::vector<Val>& a, RunContext& ctx) {
      const at::Tensor th = as_real(a[1], ctx.dtype);
      const at::Tensor lp = logit ? at::log_softmax(th, -1) : at::log(th);  // (P, K)
      const int64_t K = lp.size(-1);
      const at::Tensor y = a[0].t.dim() == 1 ? a[0].t.unsqueeze(1) : a[0].t;  // (P, N)
      require(y.numel() == 0 || (y.min().item<int64_t>() >= 1 && y.max().item<int64_t>() <= K),
              "categorical outcomes must be in 1.." + std::to_string(K));
      const int64_t P = std::max(lp.size(0), y.size(0));
      return lp.expand({P, K}).gather(1, (y - 1).expand({P, y.size(1)})).sum(1);
    };
    return c;
  };
  d["categorical"] = categorical(false);
  d["categorical_logit"] = categorical(true);
  {
    DistributionDef o;
    o.discrete = true;
    o.min_params = o.max_params = 2;
    o.type = [](const std::vector<Type>& a) -> std::optional<Type> {
      if (a[0].base != Base::int_ || a[0].array_dims > 1 || !(a[2] == kVector)) return std::nullopt;
      if (!(a[1].is_scalar() || a[1] == kVector)) return std::nullopt;
      return kReal;
    };
    o.log_density = [](const std::vector<Val>& a, RunContext& ctx) {
      const at::Tensor eta = flat(a[1], ctx.dtype);   // (P, N) or (P, 1)
      const at::Tensor cut = as_real(a[2], ctx.dtype);  // (P, K-1)
      const int64_t K = cut.size(-1) + 1;
      const at::Tensor y = a[0].t.dim() == 1 ? a[0].t.unsqueeze(1) : a[0].t;
      require(y.numel() == 0 || (y.min().item<int64_t>() >= 1 && y.max().item<int64_t>() <= K),
              "ordered_logistic outcomes must be in 1.." + std::to_string(K));
      const int64_t P = std::max({eta.size(0), cut.size(0), y.size(0)});
      const int64_t N = std::max(eta.size(1), y.size(1));
      const at::Tensor inf = at::full({cut.size(0), 1}, INFINITY, cut.options());
      const at::Tensor ext = at::cat({-inf, cut, inf}, 1).expand({P, K + 1});  // c_0 = -inf, c_K = inf
      const at::Tensor yy = y.expand({P, N});
      const at::Tensor lo = ext.gather(1, yy - 1), hi = ext.gather(1, yy);
      const at::Tensor e = eta.expand({P, N});
      // log(inv_logit(e - lo) - inv_logit(e - hi)), stably: the upper tail for y = K.
      const at::Tensor a_lo = e - lo, a_hi = e - hi;
      const at::Tensor lp = at::where(yy == K, log_inv_logit(a_lo),
                                      at::where(yy == 1, log1m_inv_logit(a_hi),
                                                log1m_inv_logit(a_hi) + log_inv_logit(a_lo) +
                                                    at::log1p(-at::exp(lo - hi))));
      return lp.sum(1);
    };
    d["ordered_logistic"] = o;
  }
  {
    DistributionDef dir;
    dir.min_params = dir.max_params = 1;
    dir.type = [](const std::vector<Type>& a) -> std::optional<Type> {
      if (a[0].base != Base::vector || a[0].array_dims > 1 || a[1].base != Base::vector || a[1].array_dims > 1)
        return std::nullopt;
      return kReal;
    };
    dir.log_density = [](const std::vector<Val>& a, RunContext& c) {
      const at::Tensor th = as_real(a[0], c.dtype), al = as_real(a[1], c.dtype);
      const at::Tensor lp = at::lgamma(al.sum(-1)) - at::lgamma(al).sum(-1) + ((al - 1) * at::log(th)).sum(-1);
      return lp.dim() == 1 ? lp : lp.flatten(1).sum(1);
    };
    d["dirichlet"] = dir;
  }
  // Multivariate normals: y a vector or array of vectors, mu likewise.
  const auto mvn = [](bool cholesky) {
    DistributionDef m;
    m.min_params = m.max_params = 2;
    m.type = [](const std::vector<Type>& a) -> std::optional<Type> {
      for (int i = 0; i < 2; ++i)
        if (!((a[i].base == Base::vector || a[i].base == Base::row_vector) && a[i].array_dims <= 1)) return std::nullopt;
      if (!(a[2] == kMatrix)) return std::nullopt;
      return kReal;
    };
    m.log_density = [cholesky](const std::vector<Val>& a, RunContext& c) {
      const at::Tensor S = as_real(a[2], c.dtype);  // (P, K, K)
      at::Tensor L = S;
      if (!cholesky) {
        auto [chol, info] = at::linalg_cholesky_ex(S);
        L = at::where((info != 0).reshape({-1, 1, 1}), at::full_like(chol, NAN), chol);
      }
      at::Tensor y = as_real(a[0], c.dtype), mu = as_real(a[1], c.dtype);
      if (y.dim() == 2) y = y.unsqueeze(1);  // (P, N, K)
      if (mu.dim() == 2) mu = mu.unsqueeze(1);
      const at::Tensor r = (y - mu);            // (P, N, K)
      const int64_t K = r.size(-1);
      const at::Tensor z = at::linalg_solve_triangular(L.unsqueeze(1), r.unsqueeze(-1), /*upper=*/false).squeeze(-1);
      const at::Tensor logdet = at::log(at::diagonal(L, 0, -2, -1)).sum(-1);  // (P,)
      return (-0.5 * (z * z).sum(-1)).sum(1) - r.size(1) * (logdet + K * kLogSqrtTwoPi);
    };
    return m;
  };
  d["multi_normal"] = mvn(false);
  d["multi_normal_cholesky"] = mvn(true);
  {
    DistributionDef lkj;
    lkj.min_params = lkj.max_params = 1;
    lkj.type = [](const std::vector<Type>& a) -> std::optional<Type> {
      if (!(a[0] == kMatrix) || !a[1].is_scalar()) return std::nullopt;
      return kReal;
    };
    lkj.log_density = [](const std::vector<Val>& a, RunContext& c) {
      const at::Tensor L = as_real(a[0], c.dtype);
      const at::Tensor eta = as_real(a[1], c.dtype);
      const auto dist = make_distribution(
          "LKJCholesky", {at::scalar_tensor(static_cast<double>(L.size(-1)), L.options()), eta.reshape({-1})});
      return dist->log_prob(L).reshape({-1});
    };
    d["lkj_corr_cholesky"] = lkj;
    // lkj_corr on the matrix itself: the Cholesky factor's density less the
    // Jacobian of L -> L L', sum over k of (K - k) log L_kk.
    DistributionDef corr = lkj;
    corr.log_density = [](const std::vector<Val>& a, RunContext& c) {
      const at::Tensor omega = as_real(a[0], c.dtype);
      const at::Tensor L = at::linalg_cholesky(omega);
      const int64_t K = L.size(-1);
      const at::Tensor eta = as_real(a[1], c.dtype);
      const auto dist = make_distribution(
          "LKJCholesky", {at::scalar_tensor(static_cast<double>(K), L.options()), eta.reshape({-1})});
      const at::Tensor weights = K - 1 - at::arange(K, L.options());  // K - k for k = 1..K
      return dist->log_prob(L).reshape({-1}) - (weights * at::log(at::diagonal(L, 0, -2, -1))).sum(-1);
    };
    d["lkj_corr"] = corr;
  }
  return d;
}

}  // namespace

const DistributionDef* find_distribution(const std::string& name) {
  static const std::map<std::string, DistributionDef> table = make_distributions();
  const auto it = table.find(name);
  return it == table.end() ? nullptr : &it->second;
}

namespace {

// log P(Y <= y) and log P(Y > y) of one element, over broadcast (P, K) tensors.
struct Tails {
  Elementwise lcdf, lccdf;
};

// Where a branch is not taken its input is clamped, so that neither its value nor its
// gradient is NaN (at::where passes a NaN gradient of the branch not taken).
std::map<std::string, Tails> make_tails() {
  std::map<std::string, Tails> t;
  const auto z_of = [](const std::vector<at::Tensor>& a) { return (a[0] - a[1]) / a[2]; };
  t["normal"] = {[z_of](const std::vector<at::Tensor>& a) { return at::special_log_ndtr(z_of(a)); },
                 [z_of](const std::vector<at::Tensor>& a) { return at::special_log_ndtr(-z_of(a)); }};
  t["std_normal"] = {[](const std::vector<at::Tensor>& a) { return at::special_log_ndtr(a[0]); },
                     [](const std::vector<at::Tensor>& a) { return at::special_log_ndtr(-a[0]); }};
  const auto log_z = [](const std::vector<at::Tensor>& a) {
    return (at::log(a[0].clamp_min(std::numeric_limits<double>::min())) - a[1]) / a[2];
  };
  t["lognormal"] = {[log_z](const std::vector<at::Tensor>& a) {
                      return at::where(a[0] > 0, at::special_log_ndtr(log_z(a)), at::full_like(log_z(a), -INFINITY));
                    },
                    [log_z](const std::vector<at::Tensor>& a) {
                      return at::where(a[0] > 0, at::special_log_ndtr(-log_z(a)), at::zeros_like(log_z(a)));
                    }};
  // 1/2 + atan(z)/pi is atan2(1, -z)/pi, which keeps its precision in the far tails.
  t["cauchy"] = {[z_of](const std::vector<at::Tensor>& a) { return at::log(at::atan2(at::ones_like(z_of(a)), -z_of(a)) / M_PI); },
                 [z_of](const std::vector<at::Tensor>& a) { return at::log(at::atan2(at::ones_like(z_of(a)), z_of(a)) / M_PI); }};
  t["double_exponential"] = {[z_of](const std::vector<at::Tensor>& a) {
                               const at::Tensor z = z_of(a);
                               return at::where(z < 0, std::log(0.5) + z.clamp_max(0), at::log1p(-0.5 * at::exp(-z.clamp_min(0))));
                             },
                             [z_of](const std::vector<at::Tensor>& a) {
                               const at::Tensor z = z_of(a);
                               return at::where(z < 0, at::log1p(-0.5 * at::exp(z.clamp_max(0))), std::log(0.5) - z.clamp_min(0));
                             }};
  t["logistic"] = {[z_of](const std::vector<at::Tensor>& a) { return -at::softplus(-z_of(a)); },
                   [z_of](const std::vector<at::Tensor>& a) { return -at::softplus(z_of(a)); }};
  t["gumbel"] = {[z_of](const std::vector<at::Tensor>& a) { return -at::exp(-z_of(a)); },
                 [z_of](const std::vector<at::Tensor>& a) { return log1m_exp(-at::exp(-z_of(a))); }};
  // -(rate * y) and -(y / sigma)^alpha: the log survival of the two, where y > 0.
  const auto exponential_h = [](const std::vector<at::Tensor>& a) { return a[1] * a[0].clamp_min(0); };
  // At y = 0 the power's base is replaced by 1 and the hazard selected as 0: the power
  // of 0 has an infinite derivative for alpha < 1, and 0 times it is NaN.
  const auto weibull_h = [](const std::vector<at::Tensor>& a) {
    const at::Tensor positive = a[0] > 0;
    const at::Tensor base = at::where(positive, a[0], at::ones_like(a[0])) / a[2];
    return at::where(positive, at::pow(base, a[1]), at::zeros_like(base));
  };
  for (const auto& [name, hazard] :
       std::vector<std::pair<std::string, Elementwise>>{{"exponential", exponential_h}, {"weibull", weibull_h}}) {
    t[name] = {[hazard](const std::vector<at::Tensor>& a) {
                 const at::Tensor H = hazard(a);
                 return at::where(a[0] > 0, log1m_exp(-H.clamp_min(std::numeric_limits<double>::min())), at::full_like(H, -INFINITY));
               },
               [hazard](const std::vector<at::Tensor>& a) { return -hazard(a); }};
  }
  t["uniform"] = {[](const std::vector<at::Tensor>& a) { return at::log(((a[0] - a[1]) / (a[2] - a[1])).clamp(0, 1)); },
                  [](const std::vector<at::Tensor>& a) { return at::log1p(-((a[0] - a[1]) / (a[2] - a[1])).clamp(0, 1)); }};
  return t;
}

}  // namespace

const CdfDef* find_cdf(const std::string& name) {
  static const std::map<std::string, CdfDef> table = [] {
    std::map<std::string, CdfDef> out;
    for (const auto& [dist, tails] : make_tails()) {
      const DistributionDef* d = find_distribution(dist);
      for (const char* sfx : {"_cdf", "_lcdf", "_lccdf"}) {
        const std::string suffix = sfx;
        const Elementwise f = suffix == "_lccdf" ? tails.lccdf : tails.lcdf;
        const auto log_total = elementwise(false, d->max_params, f).log_density;
        CdfDef c;
        c.distribution = d;
        c.evaluate = suffix == "_cdf" ? std::function<at::Tensor(const std::vector<Val>&, RunContext&)>(
                                            [log_total](const std::vector<Val>& a, RunContext& ctx) {
                                              return at::exp(log_total(a, ctx));
                                            })
                                      : log_total;
        out[dist + suffix] = c;
      }
    }
    return out;
  }();
  const auto it = table.find(name);
  return it == table.end() ? nullptr : &it->second;
}

}  // namespace vguide::model::stan
