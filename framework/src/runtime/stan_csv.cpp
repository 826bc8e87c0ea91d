#include "vguide/runtime/stan_csv.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <set>
#include <sstream>
#include <stdexcept>
#include <system_error>

namespace vguide {
namespace {

constexpr const char* kWhere = "write_stan_csv";

[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument(std::string(kWhere) + ": " + what); }

/// Shortest text that parses back to exactly `v` (std::to_chars), with NaN and the
/// infinities spelled as Stan's own writer (an iostream) spells them; the sign of a NaN
/// is dropped so that equal content always gives equal bytes.
template <typename T>
void append_number(std::string& out, T v) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(v)) {
      out += "nan";
      return;
    }
    if (std::isinf(v)) {
      out += v > 0 ? "inf" : "-inf";
      return;
    }
  }
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof(buf), v);
  if (res.ec != std::errc()) fail("cannot format a number");  // 64 chars hold any float or int64
  out.append(buf, res.ptr);
}

/// The C++ type a column's values are printed as: its own floating type (half and
/// bfloat16 widen to float, exactly), int64 for integers and bools.
enum class PrintType { kDouble, kFloat, kInt64 };

PrintType print_type_of(const at::Tensor& t, const std::string& what) {
  switch (t.scalar_type()) {
    case at::kDouble:
      return PrintType::kDouble;
    case at::kFloat:
    case at::kHalf:
    case at::kBFloat16:
      return PrintType::kFloat;
    case at::kBool:
    case at::kByte:
    case at::kChar:
    case at::kShort:
    case at::kInt:
    case at::kLong:
      return PrintType::kInt64;
    default: {
      std::ostringstream msg;
      msg << what << " has dtype " << t.scalar_type() << ", which has no Stan CSV spelling";
      fail(msg.str());
    }
  }
}

/// A block of columns ready to print: values (rows, cols) on the CPU, contiguous, in
/// the C++ type they print as.
struct Block {
  PrintType type;
  at::Tensor values;
  int64_t cols;

  void append(std::string& out, int64_t row, int64_t col) const {
    const int64_t i = row * cols + col;
    const void* data = values.data_ptr();
    switch (type) {
      case PrintType::kDouble:
        append_number(out, static_cast<const double*>(data)[i]);
        break;
      case PrintType::kFloat:
        append_number(out, static_cast<const float*>(data)[i]);
        break;
      case PrintType::kInt64:
        append_number(out, static_cast<const int64_t*>(data)[i]);
        break;
    }
  }
};

at::ScalarType storage_of(PrintType t) {
  switch (t) {
    case PrintType::kDouble:
      return at::kDouble;
    case PrintType::kFloat:
      return at::kFloat;
    case PrintType::kInt64:
      break;
  }
  return at::kLong;
}

/// `t` of shape (rows, *shape) as (rows, prod(shape)) with the element indices in
/// column-major order: reversing the element dimensions makes the first index the
/// fastest in the row-major flattening.
Block column_major_block(const at::Tensor& t, PrintType type) {
  std::vector<int64_t> perm{0};
  for (int64_t d = t.dim() - 1; d >= 1; --d) perm.push_back(d);
  const int64_t rows = t.size(0);
  at::Tensor flat = t.detach().permute(perm).reshape({rows, -1}).to(at::kCPU, storage_of(type)).contiguous();
  return {type, flat, flat.size(1)};
}

bool is_stan_identifier(const std::string& s) {
  if (s.empty() || !std::isalpha(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return !(s.size() >= 2 && s.compare(s.size() - 2, 2, "__") == 0);
}

std::string shape_text(at::IntArrayRef sizes) {
  std::ostringstream s;
  s << sizes;
  return s.str();
}

void check_log_density(const at::Tensor& t, const char* name) {
  if (!t.defined()) fail(std::string(name) + " is undefined");
  if (t.dim() != 1) fail(std::string(name) + " must have shape (N,), got " + shape_text(t.sizes()));
  if (!at::isFloatingType(t.scalar_type())) {
    std::ostringstream msg;
    msg << name << " must be floating, got dtype " << t.scalar_type();
    fail(msg.str());
  }
}

}  // namespace

std::vector<std::string> stan_column_names(const std::string& name, const std::vector<int64_t>& shape) {
  int64_t count = 1;
  for (int64_t d : shape) {
    if (d < 0) {
      throw std::invalid_argument("stan_column_names: '" + name + "' has a negative dimension in shape " +
                                  shape_text(shape));
    }
    count *= d;
  }
  std::vector<std::string> names;
  names.reserve(static_cast<size_t>(count));
  std::vector<int64_t> index(shape.size(), 0);
  for (int64_t n = 0; n < count; ++n) {
    std::string s = name;
    for (int64_t i : index) s += "." + std::to_string(i + 1);
    names.push_back(std::move(s));
    // Advance like an odometer whose first wheel turns fastest (column-major).
    for (size_t d = 0; d < index.size(); ++d) {
      if (++index[d] < shape[d]) break;
      index[d] = 0;
    }
  }
  return names;
}

void write_stan_csv(std::ostream& out, const StanCsvContent& content) {
  check_log_density(content.log_p, "log_p");
  check_log_density(content.log_g, "log_g");
  const int64_t n = content.log_p.size(0);
  if (n == 0) fail("no draws (log_p has size 0)");
  if (content.log_g.size(0) != n) {
    fail("log_g has " + std::to_string(content.log_g.size(0)) + " draws, but log_p has " + std::to_string(n));
  }
  if (content.model_name.empty()) fail("model_name is empty");
  if (content.model_name.find_first_of("\r\n") != std::string::npos) fail("model_name contains a line break");

  const std::set<std::string> standard_keys{"stan_version_major", "stan_version_minor", "stan_version_patch",
                                            "model", "method", "output_samples"};
  std::set<std::string> keys;
  for (const auto& [key, value] : content.settings) {
    const bool key_ok = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
    });
    if (!key_ok) fail("setting key '" + key + "' must be letters, digits and '_'");
    if (standard_keys.count(key) > 0) fail("setting '" + key + "' is one of the standard keys written by the writer");
    if (!keys.insert(key).second) fail("setting '" + key + "' is given twice");
    if (value.find_first_of("\r\n") != std::string::npos) fail("setting '" + key + "' has a line break in its value");
  }

  // Validate every quantity and lay out its columns before writing a byte.
  std::vector<std::string> header{"lp__", "log_p__", "log_g__"};
  std::vector<Block> blocks;
  std::vector<Block> means;
  std::set<std::string> names;
  for (const auto& q : content.quantities) {
    const std::string what = "quantity '" + q.name + "'";
    if (!is_stan_identifier(q.name)) {
      fail(what + " is not a Stan variable name (a letter, then letters, digits or '_', not ending in \"__\")");
    }
    if (!names.insert(q.name).second) fail(what + " is given twice");
    if (!q.draws.defined()) fail(what + " has undefined draws");
    if (q.draws.dim() < 1 || q.draws.size(0) != n) {
      fail(what + " has draws of shape " + shape_text(q.draws.sizes()) + ", but must have " + std::to_string(n) +
           " draws (the size of log_p) in its first dimension");
    }
    const std::vector<int64_t> shape(q.draws.sizes().begin() + 1, q.draws.sizes().end());
    if (q.draws.numel() == 0) fail(what + " has no elements (shape " + shape_text(shape) + ")");
    const PrintType type = print_type_of(q.draws, what);
    for (auto& col : stan_column_names(q.name, shape)) header.push_back(std::move(col));
    blocks.push_back(column_major_block(q.draws, type));

    if (q.mean.defined()) {
      if (q.mean.sizes() != at::IntArrayRef(shape)) {
        fail(what + " has a mean of shape " + shape_text(q.mean.sizes()) + ", but its elements have shape " +
             shape_text(shape));
      }
      means.push_back(column_major_block(q.mean.unsqueeze(0), print_type_of(q.mean, what + "'s mean")));
    } else {
      // Summed in draw order in double, so that the bytes do not depend on threads.
      const Block& b = blocks.back();
      const Block d = b.type == PrintType::kDouble ? b : column_major_block(q.draws, PrintType::kDouble);
      at::Tensor m = at::empty({1, d.cols}, at::TensorOptions().dtype(at::kDouble));
      const double* v = d.values.data_ptr<double>();
      for (int64_t c = 0; c < d.cols; ++c) {
        double s = 0.0;
        for (int64_t r = 0; r < n; ++r) s += v[r * d.cols + c];
        m.data_ptr<double>()[c] = s / static_cast<double>(n);
      }
      means.push_back({PrintType::kDouble, m, d.cols});
    }
  }
  const Block log_p = column_major_block(content.log_p.unsqueeze(1), print_type_of(content.log_p, "log_p"));
  const Block log_g = column_major_block(content.log_g.unsqueeze(1), print_type_of(content.log_g, "log_g"));

  std::string text;
  text += "# stan_version_major = " + std::to_string(kStanCsvVersionMajor) + "\n";
  text += "# stan_version_minor = " + std::to_string(kStanCsvVersionMinor) + "\n";
  text += "# stan_version_patch = " + std::to_string(kStanCsvVersionPatch) + "\n";
  text += "# model = " + content.model_name + "\n";
  text += "# method = variational\n";
  // rstan::read_stan_csv recognises variational output by this key, drops the mean
  // row, and checks the number of rows left against it.
  text += "# output_samples = " + std::to_string(n) + "\n";
  for (const auto& [key, value] : content.settings) text += "# " + key + " = " + value + "\n";
  // rstan drops the last comment line of a file without "Adaptation terminated"
  // (CmdStan's ends with its eta comment); this one has no "key = value" to lose.
  text += "# first row: posterior mean; then one row per draw\n";
  for (size_t i = 0; i < header.size(); ++i) {
    if (i > 0) text += ',';
    text += header[i];
  }
  text += '\n';

  text += "0,0,0";
  for (const Block& m : means) {
    for (int64_t c = 0; c < m.cols; ++c) {
      text += ',';
      m.append(text, 0, c);
    }
  }
  text += '\n';
  out << text;

  for (int64_t r = 0; r < n; ++r) {
    text.clear();
    text += "0,";
    log_p.append(text, r, 0);
    text += ',';
    log_g.append(text, r, 0);
    for (const Block& b : blocks) {
      for (int64_t c = 0; c < b.cols; ++c) {
        text += ',';
        b.append(text, r, c);
      }
    }
    text += '\n';
    out << text;
  }
  if (!out) throw std::runtime_error(std::string(kWhere) + ": the output stream failed");
}

}  // namespace vguide
