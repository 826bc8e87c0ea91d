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

// Why the rows counted by `size` cannot be cut, or "".
std::string refusal(const StanAst& ast, const std::string& size) {
  const std::set<std::string> just{size};
  for (const Stmt* s : data_declarations(ast)) {
    const std::vector<const Expr*> sizes = sizes_of(s->decl_type);
    for (size_t k = 0; k < sizes.size(); ++k)
      if (!(k == 0 && is_name(sizes[k], size)) && mentions(*sizes[k], just))
        return "'" + s->name + "'" + where(*s) + " uses " + size + " in a size other than its first, so its rows " +
               "cannot be cut";
  }
  for (const StmtP& s : ast.parameters)
    for (const Expr* e : sizes_of(s->decl_type))
      if (mentions(*e, just))
        return "the parameter '" + s->name + "'" + where(*s) + " is sized by " + size +
               ", and a parameter with one value per row cannot be subsampled or split (the guide draws every row " +
               "of it while the log joint would see only some)";
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
