#include "rows.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <map>

namespace vguide::model::stan {

bool mentions(const Expr& e, const std::set<std::string>& names) {
  if (e.kind == Expr::Kind::name && names.count(e.text)) return true;
  for (const auto& a : e.args)
    if (mentions(*a, names)) return true;
  for (const auto& ix : e.indices)
    for (const auto* p : {&ix.lo, &ix.hi})
      if (*p && mentions(**p, names)) return true;
  return false;
}

namespace {

// Array sizes, then the vector/matrix sizes.
std::vector<const Expr*> sizes_of(const DeclType& d) {
  std::vector<const Expr*> out;
  for (const auto& e : d.array_sizes) out.push_back(e.get());
  for (const auto& e : d.sizes) out.push_back(e.get());
  return out;
}

bool is_name(const Expr* e, const std::string& name) {
  return e && e->kind == Expr::Kind::name && e->text == name;
}

// The declarations whose values are fixed once the data are read: the data block
// and transformed data's top-level declarations.
std::vector<const Stmt*> data_declarations(const StanAst& ast) {
  std::vector<const Stmt*> out;
  for (const auto* block : {&ast.data, &ast.transformed_data})
    for (const StmtP& s : *block)
      if (s->kind == Stmt::Kind::decl) out.push_back(s.get());
  return out;
}

std::string where(const Stmt& s) { return " (line " + std::to_string(s.name_loc.line) + ")"; }

// The bounds, offset and multiplier of a declaration.
std::vector<const Expr*> constraints_of(const DeclType& d) {
  std::vector<const Expr*> out;
  for (const auto* e : {&d.lower, &d.upper, &d.offset, &d.multiplier})
    if (*e) out.push_back(e->get());
  return out;
}

// A square special type (cov_matrix[K], cholesky_factor_corr[K], ...) written with
// one size uses it for both dims.
bool square_with_one_size(const DeclType& d) {
  return d.sizes.size() == 1 && !d.special.empty() && d.special != "simplex" && d.special != "ordered" &&
         d.special != "positive_ordered" && d.special != "unit_vector";
}

// Why the rows counted by `size` cannot be cut, or "".
std::string refusal(const StanAst& ast, const std::string& size) {
  const std::set<std::string> just{size};
  for (const Stmt* s : data_declarations(ast)) {
    const std::vector<const Expr*> sizes = sizes_of(s->decl_type);
    const bool first_is_rows = !sizes.empty() && is_name(sizes[0], size);
    for (size_t k = 0; k < sizes.size(); ++k)
      if (!(k == 0 && first_is_rows) && mentions(*sizes[k], just))
        return "'" + s->name + "'" + where(*s) + " uses " + size + " in a size that is not just its first, so " +
               "its rows cannot be cut";
    if (first_is_rows && sizes.size() == 1 && square_with_one_size(s->decl_type))
      return "'" + s->name + "'" + where(*s) + " is a " + s->decl_type.special + " of " + size + " rows and " +
             size + " columns, so its rows cannot be cut";
    for (const Expr* e : constraints_of(s->decl_type))
      if (mentions(*e, just))
        return "'" + s->name + "'" + where(*s) + " has a bound that uses " + size + " (as row numbers would), " +
               "so its rows cannot be cut";
  }
  for (const auto* block : {&ast.parameters, &ast.transformed_parameters})
    for (const StmtP& s : *block) {
      if (s->kind != Stmt::Kind::decl) continue;
      const bool parameter = block == &ast.parameters;
      if (parameter)
        for (const Expr* e : sizes_of(s->decl_type))
          if (mentions(*e, just))
            return "the parameter '" + s->name + "'" + where(*s) + " is sized by " + size +
                   ", and a parameter with one value per row cannot be subsampled or split (the guide draws every " +
                   "row of it while the log joint would see only some)";
      for (const Expr* e : constraints_of(s->decl_type))
        if (mentions(*e, just))
          return std::string(parameter ? "the parameter '" : "the transformed parameter '") + s->name + "'" +
                 where(*s) + " has a bound that uses " + size + ", which a cut of the rows would change";
    }
  return "";
}

}  // namespace

std::vector<RowLayout> row_layouts(const StanAst& ast, const Scope& data) {
  std::vector<RowLayout> out;
  for (const StmtP& s : ast.data) {
    const DeclType& d = s->decl_type;
    if (d.base != Base::int_ || !d.array_sizes.empty() || !d.sizes.empty()) continue;
    RowLayout layout;
    layout.size = s->name;
    for (const Stmt* v : data_declarations(ast)) {
      const std::vector<const Expr*> sizes = sizes_of(v->decl_type);
      if (!sizes.empty() && is_name(sizes[0], s->name)) layout.variables.push_back(v->name);
    }
    if (layout.variables.empty()) continue;
    layout.rows = data.at(s->name).value.t.reshape({-1})[0].item<int64_t>();
    layout.refusal = refusal(ast, s->name);
    out.push_back(std::move(layout));
  }
  std::stable_sort(out.begin(), out.end(), [](const RowLayout& a, const RowLayout& b) { return a.rows > b.rows; });
  return out;
}

Scope select_rows(const Scope& data, const RowLayout& layout, const at::Tensor& rows) {
  Scope out = data;
  for (const std::string& name : layout.variables) {
    Variable& v = out.at(name);
    v.value.t = v.value.t.index_select(1, rows);  // dim 0 is the particle dim (1)
  }
  Variable& size = out.at(layout.size);
  size.value.t = at::full({1}, rows.numel(), at::kLong);
  return out;
}

}  // namespace vguide::model::stan
