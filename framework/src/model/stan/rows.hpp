#pragma once
// The data rows of a Stan program, for minibatches and data-parallel fits
// (docs/stan.md#minibatches). A Stan program does not say which of its data are
// rows; a data size N does it implicitly, as the first size of the data (and
// transformed data) that hold one entry per row: `vector[N] y; matrix[N, K] x;`.
// Cutting those to a subset of rows and setting N to the subset's size gives the
// program on that subset; whether its log density sums over rows is then a
// question of the model block, which StanModel answers by evaluating it.
#include <ATen/core/Tensor.h>

#include <set>
#include <string>
#include <vector>

#include "ast.hpp"
#include "interpreter.hpp"

namespace vguide::model::stan {

/// Whether `e` mentions any of `names` (to refuse sizes and bounds that use them).
bool mentions(const Expr& e, const std::set<std::string>& names);

struct RowLayout {
  std::string size;  ///< the data size that counts the rows, e.g. "N"
  int64_t rows = 0;  ///< its value
  /// Data and transformed data declared with `size` as their first size.
  std::vector<std::string> variables;
  /// Why these rows cannot be cut ("" if they can): a declaration that uses the
  /// size elsewhere, a parameter with one value per row.
  std::string refusal;
};

/// Every data size that is the first size of some data variable, the largest first
/// (ties in declaration order). Empty if there is none.
std::vector<RowLayout> row_layouts(const StanAst& ast, const Scope& data);

/// `data` with only `rows` (int64, 0-based, ascending) of each row variable and the
/// size set to their count. Reals keep their dtype.
Scope select_rows(const Scope& data, const RowLayout& layout, const at::Tensor& rows);

}  // namespace vguide::model::stan
