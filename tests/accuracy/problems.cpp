#include "accuracy/problems.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>

#include "reference/eight_schools_reference.hpp"

namespace vguide::accuracy {
namespace {

using json = nlohmann::json;
constexpr double kPi = 3.14159265358979323846;

// ---- log densities, written out ----

double normal_lpdf(double x, double mu, double sigma) {
  const double z = (x - mu) / sigma;
  return -0.5 * z * z - std::log(sigma) - 0.5 * std::log(2.0 * kPi);
}
double half_normal_lpdf(double x, double sigma) { return normal_lpdf(x, 0.0, sigma) + std::log(2.0); }
double half_cauchy_lpdf(double x, double scale) {
  return std::log(2.0 / (kPi * scale)) - std::log1p((x / scale) * (x / scale));
}
double poisson_log_lpmf(int64_t k, double f) {
  return static_cast<double>(k) * f - std::exp(f) - std::lgamma(static_cast<double>(k) + 1.0);
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  return json::parse(std::string(std::istreambuf_iterator<char>(in), {}));
}

std::string models_dir(const std::string& source_dir) { return source_dir + "/tests/accuracy/models/"; }
std::string data_dir(const std::string& source_dir) { return source_dir + "/tests/accuracy/data/"; }

// The 3-D Gaussian's moments: sds and correlations.
const Vector kGaussMean = {1.0, -2.0, 50.0};
const Vector kGaussSd = {0.5, 3.0, 20.0};
const Matrix kGaussCorrelation = {{1.0, -0.95, 0.5}, {-0.95, 1.0, -0.6}, {0.5, -0.6, 1.0}};

Matrix gauss_covariance() {
  Matrix s(3, Vector(3));
  for (size_t i = 0; i < 3; ++i)
    for (size_t j = 0; j < 3; ++j) s[i][j] = kGaussCorrelation[i][j] * kGaussSd[i] * kGaussSd[j];
  return s;
}

// The regression programs' coefficient names, in the reference's column order.
std::vector<std::string> coefficient_names(const std::string& name) {
  if (name == "kidiq" || name == "years") return {"beta_0", "beta_1"};
  if (name == "tiny_sd") return {"alpha", "beta[1]", "beta[2]"};
  if (name == "ar5") return {"alpha", "beta_1", "beta_2", "beta_3", "beta_4", "beta_5"};
  throw std::invalid_argument("not a regression posterior: '" + name + "'");
}

/// Log joint of a Gaussian regression problem at coefficients beta and sigma.
double regression_log_joint(const RegressionProblem& p, const Vector& beta, double sigma) {
  double s = half_normal_lpdf(sigma, p.sigma_scale);
  for (size_t a = 0; a < beta.size(); ++a) s += normal_lpdf(beta[a], p.prior_mean[a], p.prior_sd[a]);
  for (size_t i = 0; i < p.y.size(); ++i) {
    double mu = 0.0;
    for (size_t a = 0; a < beta.size(); ++a) mu += p.X[i][a] * beta[a];
    s += normal_lpdf(p.y[i], mu, sigma);
  }
  return s;
}

/// Splits a flat coefficient vector into the program's sites (tiny_sd's beta is one
/// site of shape [2]) and back.
Point regression_point(const std::string& name, const Vector& beta, double sigma) {
  Point point;
  const auto names = coefficient_names(name);
  for (size_t a = 0; a < names.size(); ++a) {
    const std::string& n = names[a];
    const size_t bracket = n.find('[');
    point[bracket == std::string::npos ? n : n.substr(0, bracket)].push_back(beta[a]);
  }
  point["sigma"] = {sigma};
  return point;
}

Vector regression_beta(const std::string& name, const Point& point) {
  Vector beta;
  std::string last;
  for (const auto& n : coefficient_names(name)) {
    const size_t bracket = n.find('[');
    const std::string site = bracket == std::string::npos ? n : n.substr(0, bracket);
    if (site == last) continue;
    last = site;
    const Vector& v = point.at(site);
    beta.insert(beta.end(), v.begin(), v.end());
  }
  return beta;
}

Posterior regression(const std::string& name, const std::string& source_dir) {
  const RegressionProblem problem = regression_problem(name, source_dir);
  const RegressionPosterior post = regression_posterior(problem);
  Posterior out;
  out.name = name;
  out.program_path = models_dir(source_dir) + name + ".qvr";
  out.data_path = data_dir(source_dir) + name + ".json";
  out.method = "beta | sigma Gaussian (exact), sigma by the trapezoid rule in log sigma, law of total variance";
  const auto names = coefficient_names(name);
  for (size_t a = 0; a < names.size(); ++a) {
    // Given sigma the posterior is Gaussian, where a mean-field Gaussian's
    // KL-optimal means are exact; sigma barely correlates with the coefficients.
    out.reference.push_back({names[a], post.beta[a].mean, post.beta[a].sd, true, true});
    const size_t bracket = names[a].find('[');
    if (bracket == std::string::npos) out.latent_shapes[names[a]] = {};
    else out.latent_shapes[names[a].substr(0, bracket)] = {2};
  }
  // The mean of sigma is a property of a skewed marginal: the mean-field guide
  // (a Normal on log sigma, fitted jointly) is not checked on it.
  out.reference.push_back({"sigma", post.sigma.mean, post.sigma.sd, false, true});
  out.latent_shapes["sigma"] = {};
  out.log_joint = [problem, name](const Point& point) {
    return regression_log_joint(problem, regression_beta(name, point), point.at("sigma").at(0));
  };
  for (double k : {-1.0, 0.0, 2.0}) {
    Vector beta;
    for (size_t a = 0; a < post.beta.size(); ++a) beta.push_back(post.beta[a].mean + k * post.beta[a].sd);
    out.test_points.push_back(regression_point(name, beta, post.sigma.mean + 0.5 * k * post.sigma.sd));
  }
  return out;
}

Posterior eight_schools(const std::string& source_dir) {
  const json data = read_json(source_dir + "/examples/models/eight_schools.json");
  const Vector y = data.at("y").get<Vector>(), sigma = data.at("sigma").get<Vector>();
  const auto post = vguide::reference::eight_schools_posterior({y, sigma, 5.0, 5.0});
  Posterior out;
  out.name = "eight_schools";
  out.program_path = source_dir + "/examples/models/eight_schools.qvr";
  out.data_path = source_dir + "/examples/models/eight_schools.json";
  out.method = "tests/reference/eight_schools_reference: 2-D quadrature over (mu, tau), theta | mu, tau Gaussian";
  // mu's mean is what the mean-field family holds (tau shrinks, and with it the
  // spread of theta). The full-rank Gaussian on (mu, log tau, theta_raw) cannot
  // hold tau's skewed marginal either: tau is left out of its checks.
  out.reference.push_back({"mu", post.mu.mean, post.mu.sd, true, true});
  out.reference.push_back({"tau", post.tau.mean, post.tau.sd, false, false});
  for (size_t j = 0; j < post.theta.size(); ++j)
    out.reference.push_back({"theta[" + std::to_string(j + 1) + "]", post.theta[j].mean, post.theta[j].sd, false, true});
  out.latent_shapes = {{"mu", {}}, {"tau", {}}, {"theta_raw", {static_cast<int64_t>(y.size())}}};
  out.log_joint = [y, sigma](const Point& point) {
    const double mu = point.at("mu").at(0), tau = point.at("tau").at(0);
    const Vector& raw = point.at("theta_raw");
    double s = normal_lpdf(mu, 0.0, 5.0) + half_cauchy_lpdf(tau, 5.0);
    for (size_t j = 0; j < y.size(); ++j) s += normal_lpdf(raw[j], 0.0, 1.0) + normal_lpdf(y[j], mu + tau * raw[j], sigma[j]);
    return s;
  };
  for (double k : {-1.0, 0.5, 1.5}) {
    Point p{{"mu", {post.mu.mean + k * post.mu.sd}}, {"tau", {post.tau.mean * std::exp(0.5 * k)}}, {"theta_raw", {}}};
    for (size_t j = 0; j < y.size(); ++j) p["theta_raw"].push_back(0.3 * k - 0.1 * static_cast<double>(j));
    out.test_points.push_back(p);
  }
  return out;
}

Posterior gp(const std::string& source_dir) {
  const PoissonGpProblem problem = gp_problem(source_dir);
  const ImportanceResult post = laplace_t_importance(poisson_gp_target(problem), kGpDraws, 5, 20261125);
  Posterior out;
  out.name = "gp_poisson";
  out.program_path = models_dir(source_dir) + "gp_poisson.qvr";
  out.data_path = data_dir(source_dir) + "gp_poisson.json";
  char method[200];
  std::snprintf(method, sizeof method, "importance sampling, %lld draws from a Laplace t5 proposal, ESS %.0f",
                static_cast<long long>(post.draws), post.ess);
  out.method = method;
  // The posterior of eta is log-concave and close to Gaussian: both Gaussian
  // families can hold its means.
  for (size_t i = 0; i < post.moments.size(); ++i)
    out.reference.push_back(
        {"eta[" + std::to_string(i + 1) + "]", post.moments[i].mean, post.moments[i].sd, true, true});
  const int64_t n = static_cast<int64_t>(problem.x.size());
  out.latent_shapes = {{"eta", {n}}};
  Matrix kernel = cov_exp_quad(problem.x, problem.alpha, problem.rho);
  for (int64_t i = 0; i < n; ++i) kernel[i][i] += problem.jitter;
  const Matrix l = cholesky(kernel);
  out.log_joint = [problem, l](const Point& point) {
    const Vector& eta = point.at("eta");
    double s = 0.0;
    for (size_t i = 0; i < eta.size(); ++i) {
      double f = problem.offset;
      for (size_t j = 0; j <= i; ++j) f += l[i][j] * eta[j];
      s += normal_lpdf(eta[i], 0.0, 1.0) + poisson_log_lpmf(problem.k[i], f);
    }
    return s;
  };
  for (double k : {-1.0, 0.0, 1.0}) {
    Point p{{"eta", {}}};
    for (size_t i = 0; i < post.moments.size(); ++i)
      p["eta"].push_back(post.moments[i].mean + k * (i % 2 ? 1.0 : -1.0) * post.moments[i].sd);
    out.test_points.push_back(p);
  }
  return out;
}

Posterior gauss3(const std::string& source_dir) {
  Posterior out;
  out.name = "gauss3";
  out.program_path = models_dir(source_dir) + "gauss3.qvr";
  out.data_path = data_dir(source_dir) + "gauss3.json";
  out.method = "exact: the Gaussian's own mean and covariance";
  for (size_t i = 0; i < 3; ++i)
    out.reference.push_back({"z[" + std::to_string(i + 1) + "]", kGaussMean[i], kGaussSd[i], true, true});
  out.latent_shapes = {{"z", {3}}};
  const Matrix l = cholesky(gauss_covariance());
  out.log_joint = [l](const Point& point) {
    const Vector& z = point.at("z");
    // Solve L w = z - m: log N = -|w|²/2 - log det L - (3/2) log 2 pi.
    Vector w(3);
    double s = -1.5 * std::log(2.0 * kPi);
    for (size_t i = 0; i < 3; ++i) {
      double r = z[i] - kGaussMean[i];
      for (size_t k = 0; k < i; ++k) r -= l[i][k] * w[k];
      w[i] = r / l[i][i];
      s -= 0.5 * w[i] * w[i] + std::log(l[i][i]);
    }
    return s;
  };
  out.test_points = {{{"z", {1.0, -2.0, 50.0}}}, {{"z", {1.2, -3.0, 45.0}}}, {{"z", {0.1, 1.0, 20.0}}}};
  return out;
}

Posterior banana(const std::string& source_dir) {
  Posterior out;
  out.name = "banana";
  out.program_path = models_dir(source_dir) + "banana.qvr";
  out.data_path = data_dir(source_dir) + "empty.json";
  out.method = "normalised density: log Z = 0, KL(q || p) = -ELBO";
  out.latent_shapes = {{"z_1", {}}, {"z_2", {}}};
  out.log_joint = [](const Point& point) {
    const double a = point.at("z_1").at(0), b = point.at("z_2").at(0);
    return normal_lpdf(a, 0.0, 1.5) + normal_lpdf(b, 0.5 * a * a - 1.0, 0.5);
  };
  out.test_points = {{{"z_1", {0.0}}, {"z_2", {-1.0}}}, {{"z_1", {2.0}}, {"z_2", {1.3}}}, {{"z_1", {-1.0}}, {"z_2", {0.4}}}};
  return out;
}

Posterior funnel(const std::string& source_dir) {
  Posterior out;
  out.name = "funnel";
  out.program_path = models_dir(source_dir) + "funnel.qvr";
  out.data_path = data_dir(source_dir) + "empty.json";
  out.method = "normalised density: log Z = 0, KL(q || p) = -ELBO";
  out.latent_shapes = {{"v", {}}, {"x", {}}};
  out.log_joint = [](const Point& point) {
    const double v = point.at("v").at(0), x = point.at("x").at(0);
    return normal_lpdf(v, 0.0, 1.5) + normal_lpdf(x, 0.0, std::exp(0.5 * v));
  };
  out.test_points = {{{"v", {0.0}}, {"x", {0.0}}}, {{"v", {-2.0}}, {"x", {0.1}}}, {{"v", {3.0}}, {"x", {-4.0}}}};
  return out;
}

// ---- data ----

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path);
}

std::string r_number(double v) {
  char buffer[40];
  std::snprintf(buffer, sizeof buffer, "%.17g", v);
  return buffer;
}

/// CmdStan JSON and an R dump of the same variables.
void write_pair(const std::string& dir, const std::string& name, const json& data) {
  write_text(dir + "/" + name + ".json", data.dump() + "\n");
  std::ostringstream r;
  for (const auto& [key, value] : data.items()) {
    r << key << " <- ";
    if (value.is_number()) {
      r << r_number(value.get<double>()) << "\n";
    } else if (value.at(0).is_array()) {  // a matrix, by rows: R fills by columns
      const size_t rows = value.size(), cols = value.at(0).size();
      r << "structure(c(";
      for (size_t c = 0; c < cols; ++c)
        for (size_t i = 0; i < rows; ++i) r << (c || i ? ", " : "") << r_number(value[i][c].get<double>());
      r << "), .Dim = c(" << rows << ", " << cols << "))\n";
    } else {
      r << "c(";
      for (size_t i = 0; i < value.size(); ++i) r << (i ? ", " : "") << r_number(value[i].get<double>());
      r << ")\n";
    }
  }
  write_text(dir + "/" + name + ".data.R", r.str());
}

int64_t poisson_draw(Stream& stream, double rate) {
  // Knuth's product of uniforms; rates here are below 50.
  const double limit = std::exp(-rate);
  int64_t k = 0;
  for (double product = stream.uniform(); product > limit; product *= stream.uniform()) ++k;
  return k;
}

}  // namespace

std::vector<std::string> posterior_names() {
  return {"kidiq", "years", "tiny_sd", "eight_schools", "ar5", "gp_poisson", "gauss3", "banana", "funnel"};
}

RegressionProblem regression_problem(const std::string& name, const std::string& source_dir) {
  const json data = read_json(data_dir(source_dir) + name + ".json");
  RegressionProblem p;
  p.y = data.at("y").get<Vector>();
  if (name == "kidiq" || name == "years") {
    const Vector x = data.at(name == "kidiq" ? "x" : "year").get<Vector>();
    for (double v : x) p.X.push_back({1.0, v});
    p.prior_mean = {0.0, 0.0};
    p.prior_sd = name == "kidiq" ? Vector{100.0, 10.0} : Vector{100.0, 1.0};
    p.sigma_scale = name == "kidiq" ? 50.0 : 1.0;
  } else if (name == "tiny_sd") {
    for (const auto& row : data.at("X")) p.X.push_back({1.0, row.at(0).get<double>(), row.at(1).get<double>()});
    p.prior_mean = {0.0, 0.0, 0.0};
    p.prior_sd = {10.0, 10.0, 10.0};
    p.sigma_scale = 1.0;
  } else if (name == "ar5") {
    const Vector y = p.y;
    p.y.clear();
    for (size_t t = 5; t < y.size(); ++t) {
      p.X.push_back({1.0, y[t - 1], y[t - 2], y[t - 3], y[t - 4], y[t - 5]});
      p.y.push_back(y[t]);
    }
    p.prior_mean = Vector(6, 0.0);
    p.prior_sd = {5.0, 1.0, 1.0, 1.0, 1.0, 1.0};
    p.sigma_scale = 2.0;
  } else {
    throw std::invalid_argument("not a regression posterior: '" + name + "'");
  }
  return p;
}

PoissonGpProblem gp_problem(const std::string& source_dir) {
  const json data = read_json(data_dir(source_dir) + "gp_poisson.json");
  PoissonGpProblem p;
  p.x = data.at("x").get<Vector>();
  p.k = data.at("k").get<std::vector<int64_t>>();
  p.alpha = data.at("alpha").get<double>();
  p.rho = data.at("rho").get<double>();
  p.jitter = 1e-10;
  p.offset = 0.5;
  return p;
}

Posterior load_posterior(const std::string& name, const std::string& source_dir) {
  if (name == "kidiq" || name == "years" || name == "tiny_sd" || name == "ar5") return regression(name, source_dir);
  if (name == "eight_schools") return eight_schools(source_dir);
  if (name == "gp_poisson") return gp(source_dir);
  if (name == "gauss3") return gauss3(source_dir);
  if (name == "banana") return banana(source_dir);
  if (name == "funnel") return funnel(source_dir);
  throw std::invalid_argument("unknown posterior '" + name + "'");
}

void write_data(const std::string& dir, const std::string& source_dir) {
  {  // test scores on a predictor near 100
    Stream s(101);
    json x = json::array(), y = json::array();
    for (int i = 0; i < 400; ++i) {
      const double xi = 100.0 + 15.0 * s.normal();
      x.push_back(xi);
      y.push_back(26.0 + 0.6 * xi + 18.0 * s.normal());
    }
    write_pair(dir, "kidiq", {{"N", 400}, {"x", x}, {"y", y}});
  }
  {  // a trend over the years 1991-2020
    Stream s(102);
    json year = json::array(), y = json::array();
    for (int t = 1991; t <= 2020; ++t) {
      year.push_back(static_cast<double>(t));
      y.push_back(-40.0 + 0.02 * t + 0.3 * s.normal());
    }
    write_pair(dir, "years", {{"N", 30}, {"year", year}, {"y", y}});
  }
  {  // a strong signal: noise sd 0.01
    Stream s(103);
    json X = json::array(), y = json::array();
    for (int i = 0; i < 100; ++i) {
      const double a = s.normal(), b = s.normal();
      X.push_back({a, b});
      y.push_back(1.5 + 2.0 * a - 0.7 * b + 0.01 * s.normal());
    }
    write_pair(dir, "tiny_sd", {{"N", 100}, {"X", X}, {"y", y}});
  }
  {  // AR(5): 100 steps of burn-in, then 205 values
    Stream s(104);
    const Vector phi = {0.4, 0.2, -0.15, 0.1, 0.05};
    Vector series(5, 0.0);
    for (int t = 0; t < 305; ++t) {
      double v = 1.0 + 0.5 * s.normal();
      for (size_t k = 0; k < 5; ++k) v += phi[k] * series[series.size() - 1 - k];
      series.push_back(v);
    }
    json y = json::array();
    for (size_t t = series.size() - 205; t < series.size(); ++t) y.push_back(series[t]);
    write_pair(dir, "ar5", {{"N", 205}, {"y", y}});
  }
  {  // a Poisson-log GP on 20 points over [0, 10]
    Stream s(105);
    Vector x;
    for (int i = 0; i < 20; ++i) x.push_back(10.0 * i / 19.0);
    const double alpha = 1.0, rho = 2.5;
    Matrix kernel = cov_exp_quad(x, alpha, rho);
    for (size_t i = 0; i < x.size(); ++i) kernel[i][i] += 1e-10;
    const Matrix l = cholesky(kernel);
    Vector eta(x.size());
    for (double& e : eta) e = s.normal();
    json k = json::array();
    for (size_t i = 0; i < x.size(); ++i) {
      double f = 0.5;
      for (size_t j = 0; j <= i; ++j) f += l[i][j] * eta[j];
      k.push_back(poisson_draw(s, std::exp(f)));
    }
    write_pair(dir, "gp_poisson", {{"N", 20}, {"x", x}, {"alpha", alpha}, {"rho", rho}, {"k", k}});
  }
  write_pair(dir, "gauss3", {{"m", kGaussMean}, {"S", gauss_covariance()}});
  write_text(dir + "/empty.json", "{}\n");
  write_text(dir + "/empty.data.R", "");
  // Eight schools: the example's data, as an R dump too.
  write_pair(dir, "eight_schools", read_json(source_dir + "/examples/models/eight_schools.json"));
}

}  // namespace vguide::accuracy
