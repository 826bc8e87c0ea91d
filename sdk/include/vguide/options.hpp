#pragma once
/// Guide options: a schema each plugin publishes, and `name=value` strings parsed
/// against it.
///
/// A spec is a C-layout record so that it can travel in the plugin descriptor:
///   type        "int", "real", "bool", "string", "choice", or "forward": a spec
///               named like "<k>.<option>" that lets `k.name=value` through to a
///               family's k-th sub-guide (1-based; see Options::forwarded)
///   default     text parsed like a user value; "auto" means "computed by the guide"
///   constraint  "" (none), ">0", ">=0", ">=1", ... for numbers; "a|b|c" for choice
///
/// Example: auto opts = vguide::Options::parse("normal", NormalOptions::schema(), {"init_scale=0.5"});
///          opts.get_real("init_scale") == 0.5
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "vguide/export.hpp"

extern "C" {
struct vguide_option_spec {
  const char* name;
  const char* type;
  const char* default_value;
  const char* help;
  const char* constraint;
};
}

namespace vguide {

using OptionSpec = vguide_option_spec;

/// A view of a plugin's option specs.
struct OptionSchema {
  const OptionSpec* specs = nullptr;
  std::size_t size = 0;
  const OptionSpec* begin() const { return specs; }
  const OptionSpec* end() const { return specs + size; }
};

class VGUIDE_API Options {
 public:
  using Value = std::variant<int64_t, double, bool, std::string>;

  Options() = default;

  /// Defaults of `schema`, overridden by `assignments` ("name=value").
  /// @throw std::invalid_argument for an unknown name, a malformed assignment, an
  ///        unparsable or out-of-range value, a repeated name; the message names
  ///        `family` and lists the valid options with their defaults.
  static Options parse(const std::string& family, const OptionSchema& schema,
                       const std::vector<std::string>& assignments);

  const std::string& family() const noexcept { return family_; }
  /// False for an option left at "auto".
  bool has(const std::string& name) const;
  /// Typed getters. @throw std::logic_error for a name not in the schema or a wrong
  /// type (a plugin bug, not a user error).
  int64_t get_int(const std::string& name) const;
  double get_real(const std::string& name) const;
  bool get_bool(const std::string& name) const;
  const std::string& get_string(const std::string& name) const;

  /// `k.name=value` assignments (k >= 1) for a schema with a "forward" spec, in the
  /// order given, as (k, "name=value").
  const std::vector<std::pair<int64_t, std::string>>& forwarded() const noexcept { return forwarded_; }

  /// "name=value name2=value2", in schema order; "auto" for unset values.
  std::string to_string() const;

 private:
  const Value& get(const std::string& name) const;

  std::string family_;
  std::vector<std::string> order_;
  std::map<std::string, Value> values_;
  std::vector<std::pair<int64_t, std::string>> forwarded_;
};

/// One line per option: "  init_scale=0.1  (real, >0) initial scale ...".
VGUIDE_API std::string describe_options(const OptionSchema& schema);

}  // namespace vguide
