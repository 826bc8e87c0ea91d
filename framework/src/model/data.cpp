// CmdStan JSON data: nested arrays -> rectangular tensors, integers kept integer.
#include "vguide/model/data.hpp"

#include <ATen/ATen.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

namespace vguide::model {

void Data::set(const std::string& name, const at::Tensor& value) { values_[name] = value; }

const at::Tensor& Data::get(const std::string& name, const std::string& why) const {
  auto it = values_.find(name);
  if (it == values_.end())
    throw DataError(filename_ + ": missing variable '" + name + "'" + (why.empty() ? "" : " (" + why + ")"));
  return it->second;
}

bool Data::is_integer(const std::string& name) const {
  const at::Tensor& t = get(name);
  return !at::isFloatingType(t.scalar_type());
}

std::vector<std::string> Data::names() const {
  std::vector<std::string> out;
  for (const auto& [name, value] : values_) out.push_back(name);
  return out;
}

void Data::fail(const std::string& name, const std::string& what) const {
  throw DataError(filename_ + ": variable '" + name + "'" + what);
}

std::string element_name(const std::string& name, at::IntArrayRef sizes, int64_t flat) {
  if (sizes.empty()) return name;
  std::vector<int64_t> index(sizes.size());
  for (int64_t d = static_cast<int64_t>(sizes.size()) - 1; d >= 0; --d) {
    index[d] = sizes[d] > 0 ? flat % sizes[d] : 0;
    flat = sizes[d] > 0 ? flat / sizes[d] : 0;
  }
  std::ostringstream s;
  s << name << "[";
  for (size_t d = 0; d < index.size(); ++d) s << (d ? ", " : "") << index[d] + 1;
  s << "]";
  return s.str();
}

namespace {

constexpr int kMaxDims = 32;

std::string with_article(const std::string& noun) {
  const bool vowel = !noun.empty() && std::string("aeiou").find(noun[0]) != std::string::npos;
  return (vowel ? "an " : "a ") + noun;
}

std::string path_name(const std::string& name, const std::vector<int64_t>& path) {
  if (path.empty()) return name;
  std::string s = name + "[";
  for (size_t i = 0; i < path.size(); ++i) s += (i ? ", " : "") + std::to_string(path[i] + 1);
  return s + "]";
}

std::string shape_text(const std::vector<int64_t>& shape) {
  if (shape.empty()) return "a number";
  std::string s = "shape [";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

struct Reader {
  const Data& data;
  const std::string& name;
  std::vector<double> values;
  bool integer = true;

  // The shape of `j`; appends its elements to `values` in row-major order.
  std::vector<int64_t> read(const nlohmann::json& j, std::vector<int64_t>& path) {
    if (static_cast<int>(path.size()) > kMaxDims)
      data.fail(name, " is nested too deeply (more than " + std::to_string(kMaxDims) + " dimensions)");
    if (j.is_array()) {
      std::vector<int64_t> first;
      for (size_t i = 0; i < j.size(); ++i) {
        path.push_back(static_cast<int64_t>(i));
        std::vector<int64_t> shape = read(j[i], path);
        path.pop_back();
        if (i == 0) {
          first = shape;
        } else if (shape != first) {
          std::vector<int64_t> here = path, there = path;
          here.push_back(static_cast<int64_t>(i));
          there.push_back(0);
          data.fail(name, " is a ragged array: " + path_name(name, here) + " has " + shape_text(shape) + ", but " +
                              path_name(name, there) + " has " + shape_text(first));
        }
      }
      std::vector<int64_t> shape{static_cast<int64_t>(j.size())};
      shape.insert(shape.end(), first.begin(), first.end());
      return shape;
    }
    if (j.is_number_integer() && !j.is_number_unsigned()) {
      values.push_back(static_cast<double>(j.get<int64_t>()));
      return {};
    }
    if (j.is_number_unsigned()) {
      const uint64_t u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) integer = false;
      values.push_back(static_cast<double>(u));
      return {};
    }
    if (j.is_number_float()) {
      integer = false;
      values.push_back(j.get<double>());
      return {};
    }
    if (j.is_string()) {
      const std::string s = j.get<std::string>();
      const double inf = std::numeric_limits<double>::infinity();
      double v = 0;
      if (s == "NaN" || s == "nan") {
        v = std::numeric_limits<double>::quiet_NaN();
      } else if (s == "Inf" || s == "inf" || s == "+Inf" || s == "Infinity" || s == "+Infinity") {
        v = inf;
      } else if (s == "-Inf" || s == "-inf" || s == "-Infinity") {
        v = -inf;
      } else {
        data.fail(name, ": " + path_name(name, path) + " is the string \"" + s.substr(0, 40) +
                            "\", but must be a number");
      }
      integer = false;
      values.push_back(v);
      return {};
    }
    data.fail(name, ": " + path_name(name, path) + " is " + (j.is_null() ? std::string("null") : with_article(j.type_name())) +
                        ", but must be a number");
  }
};

}  // namespace

Data parse_data(const std::string& json_text, const std::string& filename) {
  Data data(filename);
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    std::string what = e.what();
    const auto bracket = what.find("] ");
    if (what.rfind("[json.exception", 0) == 0 && bracket != std::string::npos) what = what.substr(bracket + 2);
    throw DataError(filename + ": invalid JSON: " + what);
  }
  if (!root.is_object())
    throw DataError(filename + ": expected a JSON object of variable names to values at the top level, got " +
                    (root.is_null() ? std::string("null") : with_article(root.type_name())));
  for (const auto& [name, value] : root.items()) {
    Reader reader{data, name, {}, true};
    std::vector<int64_t> path;
    const std::vector<int64_t> shape = reader.read(value, path);
    at::Tensor t = at::tensor(reader.values, at::kDouble).reshape(shape);
    if (reader.integer) t = t.to(at::kLong);
    data.set(name, t);
  }
  return data;
}

Data load_data(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(path + ": cannot read the data file");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_data(text.str(), path);
}

}  // namespace vguide::model
