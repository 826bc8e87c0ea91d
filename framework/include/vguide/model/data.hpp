#pragma once
/// Data for `.qvr` programs in CmdStan's JSON format: a top-level object mapping
/// names to numbers, arrays and nested (rectangular) arrays. Integers stay integer
/// (int64 tensors); any non-integer element makes the whole variable double.
/// CmdStan's spellings of non-finite values ("NaN", "Inf", "-Inf", "Infinity",
/// "-Infinity") are accepted.
///
/// Example: auto data = vguide::model::parse_data(R"({"N": 3, "y": [1.5, 2, 0.1]})", "data.json");
///          data.get("y").sizes() == {3}; data.is_integer("N") == true
#include <ATen/core/Tensor.h>

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "vguide/export.hpp"

namespace vguide::model {

/// Bad data: one line naming the file and the variable, e.g.
/// "data.json: variable 'y' is a ragged array: y[2] has 3 elements, but y[1] has 2".
class VGUIDE_API DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class VGUIDE_API Data {
 public:
  explicit Data(std::string filename = "<data>") : filename_(std::move(filename)) {}

  /// Binds `name` to `value` (an int64 or floating tensor; dim 0 is the row dim).
  void set(const std::string& name, const at::Tensor& value);
  bool contains(const std::string& name) const { return values_.count(name) != 0; }
  /// @throw DataError "FILE: missing variable 'NAME'" (+ " (" + why + ")" if given).
  const at::Tensor& get(const std::string& name, const std::string& why = "") const;
  bool is_integer(const std::string& name) const;
  std::vector<std::string> names() const;
  const std::string& filename() const noexcept { return filename_; }
  /// Throws DataError "FILE: variable 'NAME'" + what (what starts with " " or ":").
  [[noreturn]] void fail(const std::string& name, const std::string& what) const;

 private:
  std::string filename_;
  std::map<std::string, at::Tensor> values_;
};

/// Parses CmdStan JSON text. @throw DataError (invalid JSON, top level not an object,
/// a ragged array, a non-number element, nesting deeper than 32 dims).
VGUIDE_API Data parse_data(const std::string& json_text, const std::string& filename = "<data>");
/// Reads and parses a file. @throw DataError (also if the file cannot be read).
VGUIDE_API Data load_data(const std::string& path);

/// "y[2, 3]": the 1-based index of element `flat` (row-major) of a tensor of `sizes`.
VGUIDE_API std::string element_name(const std::string& name, at::IntArrayRef sizes, int64_t flat);

}  // namespace vguide::model
