#include "vguide/options.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <iomanip>
#include <set>
#include <sstream>
#include <stdexcept>

namespace vguide {
namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

struct ParseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

bool parse_int(const std::string& text, int64_t& out) {
  if (text.empty()) return false;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (errno != 0 || end != text.c_str() + text.size()) return false;
  out = v;
  return true;
}

bool parse_real(const std::string& text, double& out) {
  if (text.empty()) return false;
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (errno != 0 || end != text.c_str() + text.size() || !std::isfinite(v)) return false;
  out = v;
  return true;
}

// Numeric constraint: ">0", ">=1", "<1", "<=1", or "" (none).
bool satisfies(double v, const std::string& constraint) {
  if (constraint.empty()) return true;
  std::string op = constraint.substr(0, constraint[1] == '=' ? 2 : 1);
  double bound = std::strtod(constraint.c_str() + op.size(), nullptr);
  if (op == ">") return v > bound;
  if (op == ">=") return v >= bound;
  if (op == "<") return v < bound;
  if (op == "<=") return v <= bound;
  throw std::logic_error("options: bad constraint '" + constraint + "' in a plugin's schema");
}

Options::Value parse_value(const OptionSpec& spec, const std::string& text) {
  const std::string type = spec.type;
  const std::string constraint = spec.constraint ? spec.constraint : "";
  if (type == "int") {
    int64_t v = 0;
    if (!parse_int(text, v)) throw ParseError("'" + text + "' is not an integer");
    if (!satisfies(static_cast<double>(v), constraint)) throw ParseError(text + " is out of range (must be " + constraint + ")");
    return v;
  }
  if (type == "real") {
    double v = 0;
    if (!parse_real(text, v)) throw ParseError("'" + text + "' is not a finite real number");
    if (!satisfies(v, constraint)) throw ParseError(text + " is out of range (must be " + constraint + ")");
    return v;
  }
  if (type == "bool") {
    if (text == "true" || text == "1" || text == "on" || text == "yes") return true;
    if (text == "false" || text == "0" || text == "off" || text == "no") return false;
    throw ParseError("'" + text + "' is not a boolean (true/false)");
  }
  if (type == "choice") {
    for (const auto& c : split(constraint, '|'))
      if (c == text) return text;
    throw ParseError("'" + text + "' is not one of " + constraint);
  }
  if (type == "string") return text;
  if (type == "forward") throw ParseError("'" + std::string(spec.name) + "' is a pattern, not an option");
  throw std::logic_error(std::string("options: unknown option type '") + type + "' for '" + spec.name + "'");
}

// "2.init_scale" -> (2, "init_scale"); (0, "") if the name is not of that form.
std::pair<int64_t, std::string> split_forwarded(const std::string& name) {
  const auto dot = name.find('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == name.size()) return {0, ""};
  int64_t k = 0;
  if (!parse_int(name.substr(0, dot), k) || k < 1) return {0, ""};
  return {k, name.substr(dot + 1)};
}

bool forwards(const OptionSchema& schema) {
  for (const auto& spec : schema)
    if (std::string(spec.type) == "forward") return true;
  return false;
}

const OptionSpec* find_spec(const OptionSchema& schema, const std::string& name) {
  for (const auto& spec : schema)
    if (name == spec.name) return &spec;
  return nullptr;
}

std::string valid_list(const OptionSchema& schema) {
  if (schema.size == 0) return "this family takes no options";
  std::string out = "valid options:";
  for (const auto& spec : schema) out += std::string(" ") + spec.name + "=" + spec.default_value;
  return out;
}

std::string value_text(const Options::Value& v) {
  std::ostringstream s;
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, bool>) s << (x ? "true" : "false");
        else s << x;
      },
      v);
  return s.str();
}
}  // namespace

namespace {
// A plugin's spec must be well formed whatever its default: a known type, and a
// constraint the parser understands. @throw std::logic_error naming the spec.
void validate_spec(const std::string& family, const OptionSpec& spec) {
  const std::string type = spec.type, constraint = spec.constraint ? spec.constraint : "";
  auto bad = [&](const std::string& why) {
    throw std::logic_error(family + ": option spec '" + spec.name + "': " + why);
  };
  if (type == "int" || type == "real") {
    if (constraint.empty()) return;
    const size_t op = (constraint.size() > 1 && constraint[1] == '=') ? 2 : 1;
    double bound = 0;
    if (std::string("<>").find(constraint[0]) == std::string::npos || !parse_real(constraint.substr(op), bound))
      bad("constraint '" + constraint + "' is not of the form >x, >=x, <x or <=x");
    return;
  }
  if (type == "choice") {
    for (const auto& c : split(constraint, '|'))
      if (c.empty()) bad("choice list '" + constraint + "' has an empty entry");
    return;
  }
  if (type == "bool" || type == "string" || type == "forward") return;
  bad("unknown option type '" + type + "'");
}
}  // namespace

Options Options::parse(const std::string& family, const OptionSchema& schema,
                       const std::vector<std::string>& assignments) {
  Options opts;
  opts.family_ = family;
  for (const auto& spec : schema) {
    if (!spec.name || !spec.type || !spec.default_value || !spec.help)
      throw std::logic_error(family + ": an option spec has a null field");
    validate_spec(family, spec);
    if (std::string(spec.type) == "forward") continue;  // a pattern, not an option
    opts.order_.emplace_back(spec.name);
    const std::string def = spec.default_value;
    if (def == "auto") continue;
    try {
      opts.values_[spec.name] = parse_value(spec, def);
    } catch (const ParseError& e) {
      throw std::logic_error(family + ": the plugin's default for '" + spec.name + "' is invalid: " + e.what());
    }
  }
  std::set<std::string> seen;
  for (const auto& raw : assignments) {
    const auto eq = raw.find('=');
    if (eq == std::string::npos)
      throw std::invalid_argument(family + ": option '" + raw + "' is not of the form name=value; " + valid_list(schema));
    const std::string name = trim(raw.substr(0, eq));
    const std::string text = trim(raw.substr(eq + 1));
    if (const auto forwarded = split_forwarded(name); forwarded.first > 0 && forwards(schema)) {
      opts.forwarded_.emplace_back(forwarded.first, forwarded.second + "=" + text);
      continue;
    }
    const OptionSpec* spec = find_spec(schema, name);
    if (spec == nullptr || std::string(spec->type) == "forward")
      throw std::invalid_argument(family + ": unknown option '" + name + "'; " + valid_list(schema));
    if (!seen.insert(name).second)
      throw std::invalid_argument(family + ": option '" + name + "' is given twice; " + valid_list(schema));
    if (text == "auto" && std::string(spec->default_value) == "auto") {
      opts.values_.erase(name);
      continue;
    }
    try {
      opts.values_[name] = parse_value(*spec, text);
    } catch (const ParseError& e) {
      throw std::invalid_argument(family + ": bad value for option '" + name + "': " + e.what() + "; " +
                                  valid_list(schema));
    }
  }
  return opts;
}

bool Options::has(const std::string& name) const { return values_.count(name) > 0; }

const Options::Value& Options::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end())
    throw std::logic_error(family_ + ": option '" + name + "' is not set (not in the schema, or left at auto)");
  return it->second;
}

int64_t Options::get_int(const std::string& name) const {
  const auto& v = get(name);
  if (auto p = std::get_if<int64_t>(&v)) return *p;
  throw std::logic_error(family_ + ": option '" + name + "' is not an int");
}

double Options::get_real(const std::string& name) const {
  const auto& v = get(name);
  if (auto p = std::get_if<double>(&v)) return *p;
  throw std::logic_error(family_ + ": option '" + name + "' is not a real");
}

bool Options::get_bool(const std::string& name) const {
  const auto& v = get(name);
  if (auto p = std::get_if<bool>(&v)) return *p;
  throw std::logic_error(family_ + ": option '" + name + "' is not a bool");
}

const std::string& Options::get_string(const std::string& name) const {
  const auto& v = get(name);
  if (auto p = std::get_if<std::string>(&v)) return *p;
  throw std::logic_error(family_ + ": option '" + name + "' is not a string");
}

std::string Options::to_string() const {
  std::string out;
  for (const auto& name : order_) {
    auto it = values_.find(name);
    out += (out.empty() ? "" : " ") + name + "=" + (it == values_.end() ? "auto" : value_text(it->second));
  }
  return out;
}

std::string describe_options(const OptionSchema& schema) {
  std::ostringstream s;
  for (const auto& spec : schema) {
    s << "  " << std::left << std::setw(24) << (std::string(spec.name) + "=" + spec.default_value) << " ("
      << spec.type;
    if (spec.constraint && *spec.constraint) s << ", " << spec.constraint;
    s << ") " << spec.help << "\n";
  }
  return s.str();
}

}  // namespace vguide
