#include "report.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <stdexcept>
#include <tuple>
#include <utility>
#include <vector>

namespace vguide::bench {
namespace {

struct Record {
  std::string curve, series, guide;
  std::string key;  ///< the model and its sizes (ModelSpec::key); empty in files before the Stan column
  int64_t x = 0, S = 0;
  bool full_batch = true;
  double us = 0, floor_us = 0, ratio = 0;          // wall time
  double cpu_us = 0, cpu_floor_us = 0, cpu_ratio = 0;  // process CPU time
};

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// A decimal below 10 µs, where Stan's iterations and the direct step are.
std::string us_text(double us) {
  return us >= 1000 ? fmt("%.2f ms", us / 1000) : fmt(us < 10 ? "%.1f µs" : "%.0f µs", us);
}

std::vector<Record> read_records(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot read");
  std::vector<Record> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    try {
      const auto j = nlohmann::json::parse(line);
      if (!j.contains("us_per_step")) continue;  // self-check and error lines
      out.push_back({j.at("curve"), j.at("series"), j.at("guide"), j.value("key", ""), j.at("x"), j.at("S"),
                     j.at("B").get<int64_t>() >= j.at("N").get<int64_t>(), j.at("us_per_step"), j.at("baseline_us_per_step"), j.at("ratio"),
                     j.at("cpu_us_per_step"), j.at("baseline_cpu_us_per_step"), j.at("cpu_ratio")});
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error(path + ":" + std::to_string(n) + ": not a result record: " + e.what());
    }
  }
  return out;
}

// Stan's ADVI per iteration (bench/stan/stan_column.R's JSON lines), by the
// configuration's model key, algorithm and S.
class StanTimes {
 public:
  /// Reads `path`; an empty path means Stan was not measured.
  /// @throw std::runtime_error naming the file and line of a line it cannot read.
  explicit StanTimes(const std::string& path) : measured_(!path.empty()) {
    if (!measured_) return;
    std::ifstream in(path);
    if (!in) throw std::runtime_error(path + ": cannot read");
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      if (line.empty()) continue;
      try {
        const auto j = nlohmann::json::parse(line);
        if (j.contains("stan")) {  // the metadata line
          about_ = j.at("stan").get<std::string>();
          continue;
        }
        const auto k = std::make_tuple(j.at("key").get<std::string>(), j.at("algorithm").get<std::string>(),
                                       j.at("S").get<int64_t>());
        at_[k] = j.contains("error") ? Time{0, j.at("error").get<std::string>()} : Time{j.at("us_per_iter"), ""};
      } catch (const nlohmann::json::exception& e) {
        throw std::runtime_error(path + ":" + std::to_string(n) + ": not a Stan timing line: " + e.what());
      }
    }
  }

  /// The "Stan ADVI" and "× Stan" cells of a record: "—" where Stan has no peer or no
  /// entry, "failed" where its run failed.
  std::pair<std::string, std::string> cells(const Record& r) const {
    const std::string algorithm = stan_algorithm(r.guide, r.full_batch);
    if (algorithm.empty()) return {"—", "—"};
    if (!measured_) return {"not measured (rstan absent)", "—"};
    const auto it = at_.find({r.key, algorithm, r.S});
    if (it == at_.end()) return {"—", "—"};
    if (!it->second.error.empty()) return {"failed", "—"};
    return {us_text(it->second.us), fmt("%.2f", r.us / it->second.us)};
  }

  /// What the column holds, for the line above the tables.
  std::string describe() const {
    if (!measured_)
      return "Stan ADVI: not measured (rstan absent; scripts/bench.sh measures it when Rscript and rstan are "
             "installed).";
    return "Stan ADVI (" + (about_.empty() ? std::string("rstan") : about_) +
           "): `rstan::vb` per iteration, meanfield beside `normal`, fullrank beside `mvn`, grad_samples = S, full "
           "batch, double precision (also beside the float32 tables), one thread; (time of a long run − time of a "
           "short run) / extra iterations (bench/stan/stan_column.R). × Stan: the framework's wall time per step over "
           "Stan's; — where Stan has no such configuration.";
  }

 private:
  struct Time {
    double us = 0;
    std::string error;
  };
  bool measured_;
  std::string about_;
  std::map<std::tuple<std::string, std::string, int64_t>, Time> at_;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Table groups: rows are guides; per S the wall time, its ratio to the floor, and
// the ratio of CPU times.
void table(std::ostream& out, const std::string& series, const std::vector<Record>& rs, const StanTimes& stan) {
  std::vector<std::string> guides;
  std::set<int64_t> Ss;
  std::map<std::pair<std::string, int64_t>, const Record*> at;
  std::map<int64_t, std::vector<double>> floors, cpu_floors;
  for (const auto& r : rs) {
    if (std::find(guides.begin(), guides.end(), r.guide) == guides.end()) guides.push_back(r.guide);
    Ss.insert(r.S);
    at[{r.guide, r.S}] = &r;
    floors[r.S].push_back(r.floor_us);
    cpu_floors[r.S].push_back(r.cpu_floor_us);
  }
  out << "\n**" << series << "**\n\n| guide |";
  for (int64_t S : Ss) out << " S = " << S << ", wall | × floor | CPU | × floor (CPU) | Stan ADVI | × Stan |";
  out << "\n| --- |";
  for (size_t i = 0; i < Ss.size(); ++i) out << " ---: | ---: | ---: | ---: | ---: | ---: |";
  out << "\n| hand-written floor (median) |";
  for (int64_t S : Ss)
    out << " " << us_text(median(floors[S])) << " | 1 | " << us_text(median(cpu_floors[S])) << " | 1 | — | — |";
  for (const auto& g : guides) {
    out << "\n| " << g << " |";
    for (int64_t S : Ss) {
      auto it = at.find({g, S});
      if (it == at.end()) {
        out << " — | — | — | — | — | — |";
        continue;
      }
      const Record& r = *it->second;
      const auto [stan_us, stan_ratio] = stan.cells(r);
      out << " " << us_text(r.us) << " | " << fmt("%.2f", r.ratio) << " | " << us_text(r.cpu_us) << " | "
          << fmt("%.2f", r.cpu_ratio) << " | " << stan_us << " | " << stan_ratio << " |";
    }
  }
  out << "\n";
}

// Curves: rows are x; per series the wall time, the floor's, their ratio and the
// ratio of CPU times.
void curve_table(std::ostream& out, const std::string& curve, const std::vector<Record>& rs, const StanTimes& stan) {
  std::vector<std::string> series;
  std::set<int64_t> xs;
  std::map<std::pair<std::string, int64_t>, const Record*> at;
  for (const auto& r : rs) {
    if (std::find(series.begin(), series.end(), r.series) == series.end()) series.push_back(r.series);
    xs.insert(r.x);
    at[{r.series, r.x}] = &r;
  }
  out << "\n**step time against " << curve << "**\n\n| " << curve << " |";
  for (const auto& s : series) out << " " << s << ", wall | floor | × | × (CPU) | Stan ADVI | × Stan |";
  out << "\n| ---: |";
  for (size_t i = 0; i < series.size(); ++i) out << " ---: | ---: | ---: | ---: | ---: | ---: |";
  for (int64_t x : xs) {
    out << "\n| " << x << " |";
    for (const auto& s : series) {
      auto it = at.find({s, x});
      if (it == at.end()) {
        out << " — | — | — | — | — | — |";
        continue;
      }
      const Record& r = *it->second;
      const auto [stan_us, stan_ratio] = stan.cells(r);
      out << " " << us_text(r.us) << " | " << us_text(r.floor_us) << " | " << fmt("%.2f", r.ratio) << " | "
          << fmt("%.2f", r.cpu_ratio) << " | " << stan_us << " | " << stan_ratio << " |";
    }
  }
  out << "\n";
}

}  // namespace

std::string stan_algorithm(const std::string& guide, bool full_batch) {
  if (!full_batch) return "";
  if (guide == "normal") return "meanfield";
  if (guide == "mvn") return "fullrank";
  return "";
}

void write_report(const std::string& results_path, const std::string& plot_dir, const std::string& stan_path,
                  std::ostream& out) {
  const std::vector<Record> records = read_records(results_path);
  const StanTimes stan(stan_path);
  out << "\n" << stan.describe() << "\n";
  std::vector<std::string> order;  // groups in file order
  std::map<std::string, std::vector<Record>> groups;
  for (const auto& r : records) {
    const std::string key = r.curve == "table" ? "table/" + r.series : r.curve;
    if (!groups.count(key)) order.push_back(key);
    groups[key].push_back(r);
  }
  for (const auto& key : order) {
    const auto& rs = groups[key];
    if (key.rfind("table/", 0) == 0) {
      table(out, rs.front().series, rs, stan);
      continue;
    }
    curve_table(out, key, rs, stan);
    if (plot_dir.empty()) continue;
    std::filesystem::create_directories(plot_dir);
    std::map<std::string, std::vector<const Record*>> by_series;
    for (const auto& r : rs) by_series[r.series].push_back(&r);
    for (auto& [series, points] : by_series) {
      std::sort(points.begin(), points.end(), [](const Record* a, const Record* b) { return a->x < b->x; });
      const std::string path = plot_dir + "/" + key + "_" + series + ".dat";
      std::ofstream f(path);
      f << "# " << key << "\tus_per_step\tfloor_us\tratio\tcpu_us_per_step\tcpu_floor_us\tcpu_ratio\n";
      for (const Record* p : points)
        f << p->x << "\t" << p->us << "\t" << p->floor_us << "\t" << p->ratio << "\t" << p->cpu_us << "\t"
          << p->cpu_floor_us << "\t" << p->cpu_ratio << "\n";
      if (!f) throw std::runtime_error(path + ": cannot write");
    }
  }
}

}  // namespace vguide::bench
