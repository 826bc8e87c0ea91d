// The Stan reader: text -> StanAst (syntax only; checker.cpp gives types and names).
// A recursive-descent parser over a small lexer. Constructs outside the supported
// language are refused where they start, "<construct> is not supported".
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <set>

#include "parser.hpp"

namespace vguide::model::stan {

namespace {

struct Token {
  enum class Kind { ident, int_lit, real_lit, string_lit, op, end } kind = Kind::end;
  std::string text;
  SourceLoc loc;
};

// Longest first, so ".*=" is not read as ".*" then "=".
const char* const kOperators[] = {"%/%", ".*=", "./=", "<-", "+=", "-=", "*=", "/=", ".*", "./", ".^", "==", "!=", "<=",
                                  ">=",  "&&",  "||",  "<",  ">",  "+",  "-",  "*",  "/",  "%",  "^",  "'",  "!",  "=",
                                  "~",   "?",   ":",   ",",  ";",  "(",  ")",  "[",  "]",  "{",  "}",  "|",  "\\"};

class Lexer {
 public:
  Lexer(const ProgramFile& file, const std::string& text) : file_(file), text_(text) {}

  std::vector<Token> run() {
    std::vector<Token> out;
    for (;;) {
      skip_space_and_comments();
      Token t;
      t.loc = {line_, col_};
      if (pos_ >= text_.size()) {
        out.push_back(t);
        return out;
      }
      const char c = text_[pos_];
      if (std::isalpha(static_cast<unsigned char>(c))) {
        const size_t start = pos_;
        while (pos_ < text_.size() && (std::isalnum(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '_'))
          advance();
        t.kind = Token::Kind::ident;
        t.text = text_.substr(start, pos_ - start);
      } else if (std::isdigit(static_cast<unsigned char>(c)) ||
                 (c == '.' && pos_ + 1 < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_ + 1])))) {
        number(t);
      } else if (c == '"') {
        advance();
        const size_t start = pos_;
        while (pos_ < text_.size() && text_[pos_] != '"' && text_[pos_] != '\n') advance();
        if (pos_ >= text_.size() || text_[pos_] != '"') fail(t.loc, "a string that does not end on its line");
        t.kind = Token::Kind::string_lit;
        t.text = text_.substr(start, pos_ - start);
        advance();
      } else {
        for (const char* op : kOperators) {
          const size_t n = std::char_traits<char>::length(op);
          if (text_.compare(pos_, n, op) == 0) {
            t.kind = Token::Kind::op;
            t.text = op;
            for (size_t i = 0; i < n; ++i) advance();
            break;
          }
        }
        if (t.kind != Token::Kind::op) {
          const unsigned char u = static_cast<unsigned char>(c);
          fail(t.loc, u >= 32 && u < 127 ? std::string("unexpected character '") + c + "'"
                                         : "unexpected byte " + std::to_string(u));
        }
      }
      out.push_back(t);
    }
  }

 private:
  [[noreturn]] void fail(const SourceLoc& loc, const std::string& message) { throw ProgramError(file_, loc, message); }

  void advance() {
    if (text_[pos_] == '\n') {
      ++line_;
      col_ = 1;
    } else {
      ++col_;
    }
    ++pos_;
  }

  void skip_space_and_comments() {
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        advance();
      } else if (c == '#' || text_.compare(pos_, 2, "//") == 0) {
        while (pos_ < text_.size() && text_[pos_] != '\n') advance();
      } else if (text_.compare(pos_, 2, "/*") == 0) {
        const SourceLoc start{line_, col_};
        advance();
        advance();
        while (pos_ < text_.size() && text_.compare(pos_, 2, "*/") != 0) advance();
        if (pos_ >= text_.size()) fail(start, "a comment that is never closed");
        advance();
        advance();
      } else {
        return;
      }
    }
  }

  void number(Token& t) {
    const size_t start = pos_;
    bool real = false;
    while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) advance();
    if (pos_ < text_.size() && text_[pos_] == '.' &&
        !(pos_ + 1 < text_.size() && (text_[pos_ + 1] == '*' || text_[pos_ + 1] == '/' || text_[pos_ + 1] == '^'))) {
      real = true;
      advance();
      while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) advance();
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      size_t look = pos_ + 1;
      if (look < text_.size() && (text_[look] == '+' || text_[look] == '-')) ++look;
      if (look < text_.size() && std::isdigit(static_cast<unsigned char>(text_[look]))) {
        real = true;
        while (pos_ < look) advance();
        while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) advance();
      }
    }
    if (pos_ < text_.size() && text_[pos_] == 'i') fail(t.loc, "complex numbers are not supported");
    t.text = text_.substr(start, pos_ - start);
    t.kind = real ? Token::Kind::real_lit : Token::Kind::int_lit;
  }

  const ProgramFile& file_;
  const std::string& text_;
  size_t pos_ = 0;
  int line_ = 1, col_ = 1;
};

const std::set<std::string> kTypeWords = {"int",          "real",
                                          "vector",       "row_vector",
                                          "matrix",       "simplex",
                                          "ordered",      "positive_ordered",
                                          "unit_vector",  "cholesky_factor_corr",
                                          "cholesky_factor_cov", "corr_matrix",
                                          "cov_matrix",   "array"};
const std::set<std::string> kUnsupportedTypes = {"complex", "complex_vector", "complex_row_vector", "complex_matrix",
                                                 "tuple", "sum_to_zero_vector", "column_stochastic_matrix",
                                                 "row_stochastic_matrix"};

class Parser {
 public:
  Parser(const ProgramFile& file, std::vector<Token> tokens) : file_(file), t_(std::move(tokens)) {}

  StanAst program() {
    StanAst ast;
    int order = -1;
    while (!at_end()) {
      const Token start = peek();
      if (start.kind != Token::Kind::ident) fail(start.loc, "expected a block name, found " + describe(start));
      std::string block = start.text;
      next();
      if ((block == "transformed" || block == "generated") && peek().kind == Token::Kind::ident) {
        block += " " + peek().text;
        next();
      }
      static const std::vector<std::string> kBlocks = {"functions",  "data",  "transformed data",
                                                       "parameters", "transformed parameters",
                                                       "model",      "generated quantities"};
      const auto it = std::find(kBlocks.begin(), kBlocks.end(), block);
      if (it == kBlocks.end()) fail(start.loc, "'" + block + "' is not a block of a Stan program");
      const int index = static_cast<int>(it - kBlocks.begin());
      if (index <= order)
        fail(start.loc, "the " + block + " block " + (index == order ? "appears twice" : "comes too late") +
                            " (blocks go in the order functions, data, transformed data, parameters, transformed "
                            "parameters, model, generated quantities)");
      order = index;
      expect("{");
      const auto kind = static_cast<BlockKind>(index);
      if (kind == BlockKind::functions) {
        while (!accept("}")) ast.functions.push_back(function());
        continue;
      }
      std::vector<StmtP>& into = kind == BlockKind::data                     ? ast.data
                                 : kind == BlockKind::transformed_data       ? ast.transformed_data
                                 : kind == BlockKind::parameters             ? ast.parameters
                                 : kind == BlockKind::transformed_parameters ? ast.transformed_parameters
                                 : kind == BlockKind::model                  ? ast.model
                                                                             : ast.generated_quantities;
      const bool decls_only = kind == BlockKind::data || kind == BlockKind::parameters;
      while (!accept("}")) {
        if (at_end()) fail(peek().loc, "the " + block + " block is not closed with '}'");
        if (decls_only && !is_type_start()) fail(peek().loc, "the " + block + " block holds declarations only");
        statement_into(into, 0);
      }
    }
    return ast;
  }

 private:
  // ---- tokens --------------------------------------------------------------------------
  const Token& peek(size_t ahead = 0) const { return t_[std::min(pos_ + ahead, t_.size() - 1)]; }
  bool at_end() const { return peek().kind == Token::Kind::end; }
  void next() {
    if (pos_ + 1 < t_.size()) ++pos_;
  }
  bool is_op(const char* op, size_t ahead = 0) const {
    return peek(ahead).kind == Token::Kind::op && peek(ahead).text == op;
  }
  bool accept(const char* op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  static std::string describe(const Token& t) {
    switch (t.kind) {
      case Token::Kind::end: return "the end of the file";
      case Token::Kind::string_lit: return "a string";
      default: return "'" + t.text + "'";
    }
  }
  void expect(const char* op) {
    if (!accept(op)) fail(peek().loc, std::string("expected '") + op + "', found " + describe(peek()));
  }
  std::string identifier(SourceLoc* loc = nullptr) {
    const Token& t = peek();
    if (t.kind != Token::Kind::ident) fail(t.loc, "expected a name, found " + describe(t));
    if (loc) *loc = t.loc;
    std::string s = t.text;
    next();
    return s;
  }
  [[noreturn]] void fail(const SourceLoc& loc, const std::string& message) const {
    throw ProgramError(file_, loc, message);
  }

  // Deep nesting is refused rather than overflowing the stack.
  struct Depth {
    Depth(Parser& p, const SourceLoc& loc) : p_(p) {
      if (++p_.depth_ > kMaxExprDepth) p_.fail(loc, "nesting deeper than " + std::to_string(kMaxExprDepth) + " levels");
    }
    ~Depth() { --p_.depth_; }
    Parser& p_;
  };

  // ---- declarations --------------------------------------------------------------------
  bool is_type_start() const {
    return peek().kind == Token::Kind::ident &&
           (kTypeWords.count(peek().text) || kUnsupportedTypes.count(peek().text));
  }

  std::vector<ExprP> bracket_list() {  // [e, e, ...]
    expect("[");
    std::vector<ExprP> out;
    do out.push_back(expression());
    while (accept(","));
    expect("]");
    return out;
  }

  void bounds(DeclType& d, bool affine_allowed) {
    if (!accept("<")) return;
    do {
      SourceLoc loc;
      const std::string key = identifier(&loc);
      expect("=");
      ExprP e = arithmetic();  // no comparisons: '>' closes the bounds
      ExprP* slot = key == "lower"        ? &d.lower
                    : key == "upper"      ? &d.upper
                    : key == "offset"     ? &d.offset
                    : key == "multiplier" ? &d.multiplier
                                          : nullptr;
      if (!slot) fail(loc, "'" + key + "' is not a bound (lower, upper, offset, multiplier)");
      if (*slot) fail(loc, "'" + key + "' is given twice");
      if (!affine_allowed && (key == "offset" || key == "multiplier")) fail(loc, "'" + key + "' on an int");
      *slot = std::move(e);
    } while (accept(","));
    if ((d.lower || d.upper) && (d.offset || d.multiplier))
      fail(d.loc, "a declaration cannot have both lower/upper bounds and offset/multiplier");
    expect(">");
  }

  DeclType decl_type() {
    DeclType d;
    d.loc = peek().loc;
    if (peek().text == "array") {
      next();
      d.array_sizes = bracket_list();
      if (!is_type_start() || peek().text == "array") fail(peek().loc, "expected an element type after array[...]");
    }
    SourceLoc loc;
    const std::string word = identifier(&loc);
    if (kUnsupportedTypes.count(word)) fail(loc, "the type " + word + " is not supported");
    if (word == "int" || word == "real") {
      d.base = word == "int" ? Base::int_ : Base::real;
      bounds(d, word == "real");
    } else if (word == "vector" || word == "row_vector" || word == "matrix") {
      d.base = word == "vector" ? Base::vector : word == "row_vector" ? Base::row_vector : Base::matrix;
      bounds(d, true);
      d.sizes = bracket_list();
      const size_t want = d.base == Base::matrix ? 2 : 1;
      if (d.sizes.size() != want)
        fail(loc, word + " takes " + std::to_string(want) + (want == 1 ? " size" : " sizes") + ", but " +
                      std::to_string(d.sizes.size()) + " were given");
    } else {
      d.special = word;
      d.base = word == "simplex" || word == "ordered" || word == "positive_ordered" || word == "unit_vector"
                   ? Base::vector
                   : Base::matrix;
      d.sizes = bracket_list();
      const size_t most = word == "cholesky_factor_cov" ? 2 : 1;
      if (d.sizes.size() > most)
        fail(loc, word + " takes " + (most == 1 ? std::string("1 size") : "1 or 2 sizes") + ", but " +
                      std::to_string(d.sizes.size()) + " were given");
    }
    return d;
  }

  // One declaration, or several of one type: `real a, b = 2;`.
  std::vector<StmtP> declarations() {
    const SourceLoc loc = peek().loc;
    const DeclType type = decl_type();
    std::vector<StmtP> out;
    do {
      auto s = std::make_shared<Stmt>();
      s->kind = Stmt::Kind::decl;
      s->loc = loc;
      s->decl_type = type;
      s->name = identifier(&s->name_loc);
      if (is_op("[")) {  // the older `real y[N]`
        if (!s->decl_type.array_sizes.empty()) fail(peek().loc, "array sizes given twice");
        s->decl_type.array_sizes = bracket_list();
      }
      if (accept("=")) s->value = expression();
      out.push_back(s);
    } while (accept(","));
    expect(";");
    return out;
  }

  // Appends the next statement (several for `real a, b;`).
  void statement_into(std::vector<StmtP>& out, int depth) {
    if (is_type_start()) {
      for (auto& s : declarations()) out.push_back(std::move(s));
      return;
    }
    out.push_back(statement(depth));
  }

  // ---- functions -----------------------------------------------------------------------
  Type unsized_type(bool allow_void) {
    Type t;
    SourceLoc loc = peek().loc;
    if (peek().kind == Token::Kind::ident && peek().text == "array") {
      next();
      expect("[");
      t.array_dims = 1;
      while (accept(",")) ++t.array_dims;
      expect("]");
    }
    const std::string word = identifier(&loc);
    if (word == "void" && allow_void && t.array_dims == 0) {
      t.base = Base::void_;
      return t;
    }
    if (word == "int") t.base = Base::int_;
    else if (word == "real") t.base = Base::real;
    else if (word == "vector") t.base = Base::vector;
    else if (word == "row_vector") t.base = Base::row_vector;
    else if (word == "matrix") t.base = Base::matrix;
    else if (kUnsupportedTypes.count(word)) fail(loc, "the type " + word + " is not supported");
    else fail(loc, "expected a type, found '" + word + "'");
    if (accept("[")) {  // the older `real[]`
      ++t.array_dims;
      while (accept(",")) ++t.array_dims;
      expect("]");
    }
    return t;
  }

  Function function() {
    Function f;
    f.loc = peek().loc;
    f.ret = unsized_type(true);
    f.name = identifier(&f.loc);
    expect("(");
    if (!is_op(")")) {
      do {
        Param p;
        if (peek().kind == Token::Kind::ident && peek().text == "data") {
          p.data_only = true;
          next();
        }
        p.type = unsized_type(false);
        p.name = identifier(&p.loc);
        f.params.push_back(p);
      } while (accept(","));
    }
    expect(")");
    if (accept(";")) return f;
    f.defined = true;
    if (!is_op("{")) fail(peek().loc, "expected '{' to start the body of " + f.name);
    f.body = statement(0)->body;
    return f;
  }

  // ---- statements ----------------------------------------------------------------------
  StmtP statement(int depth) {
    const Token start = peek();
    if (depth > kMaxExprDepth) fail(start.loc, "statements nested deeper than " + std::to_string(kMaxExprDepth));
    auto s = std::make_shared<Stmt>();
    s->loc = start.loc;
    if (is_type_start()) {  // a declaration as a loop's or branch's whole body
      s->kind = Stmt::Kind::block;
      s->body = declarations();
      return s;
    }
    if (accept("{")) {
      s->kind = Stmt::Kind::block;
      while (!accept("}")) {
        if (at_end()) fail(start.loc, "a '{' that is never closed");
        statement_into(s->body, depth + 1);
      }
      return s;
    }
    if (accept(";")) return s;
    if (start.kind == Token::Kind::ident) {
      const std::string& w = start.text;
      if (w == "for") {
        next();
        expect("(");
        s->name = identifier(&s->name_loc);
        if (peek().kind != Token::Kind::ident || peek().text != "in")
          fail(peek().loc, "expected 'in', found " + describe(peek()));
        next();
        s->value = expression_no_range();
        if (accept(":")) {
          s->kind = Stmt::Kind::for_range;
          s->hi = expression();
        } else {
          s->kind = Stmt::Kind::foreach;
        }
        expect(")");
        s->body.push_back(statement(depth + 1));
        return s;
      }
      if (w == "while") {
        next();
        s->kind = Stmt::Kind::while_;
        expect("(");
        s->cond = expression();
        expect(")");
        s->body.push_back(statement(depth + 1));
        return s;
      }
      if (w == "if") {
        next();
        s->kind = Stmt::Kind::if_;
        expect("(");
        s->cond = expression();
        expect(")");
        s->body.push_back(statement(depth + 1));
        if (peek().kind == Token::Kind::ident && peek().text == "else") {
          next();
          s->has_else = true;
          s->else_body.push_back(statement(depth + 1));
        }
        return s;
      }
      if (w == "break" || w == "continue") {
        next();
        s->kind = w == "break" ? Stmt::Kind::break_ : Stmt::Kind::continue_;
        expect(";");
        return s;
      }
      if (w == "return") {
        next();
        s->kind = Stmt::Kind::return_;
        if (!is_op(";")) s->value = expression();
        expect(";");
        return s;
      }
      if (w == "print" || w == "reject" || w == "fatal_error") {
        next();
        s->kind = w == "print" ? Stmt::Kind::print : Stmt::Kind::reject;
        expect("(");
        do s->args.push_back(printable());
        while (accept(","));
        expect(")");
        expect(";");
        return s;
      }
      if (w == "target" && is_op("+=", 1)) {
        next();
        next();
        s->kind = Stmt::Kind::target;
        s->value = expression();
        expect(";");
        return s;
      }
      if (w == "increment_log_prob") fail(start.loc, "increment_log_prob is not supported (write target += ...)");
      if (w == "else") fail(start.loc, "'else' without an 'if'");
      if (w == "profile") fail(start.loc, "profile blocks are not supported");
    }
    // An assignment, a sampling statement or a call. Stan before 2.33 also wrote
    // assignment as `x <- value;` (elsewhere `a<-1` compares a with -1).
    const bool arrow = old_assignment_ahead();
    ExprP e = arrow ? postfix() : expression();
    if (arrow) {
      next();  // the '<-'
      assignment_to(*s, *e, "<-");
      s->op = "=";
      return s;
    }
    if (accept("~")) {
      s->kind = Stmt::Kind::tilde;
      s->value = e;
      s->dist = identifier(&s->dist_loc);
      expect("(");
      if (!is_op(")")) {
        do s->args.push_back(expression());
        while (accept(","));
      }
      expect(")");
      if (peek().kind == Token::Kind::ident && peek().text == "T" && is_op("[", 1))
        fail(peek().loc, "truncation T[,] is not supported");
      expect(";");
      return s;
    }
    static const std::set<std::string> kAssign = {"=", "+=", "-=", "*=", "/=", ".*=", "./="};
    if (peek().kind == Token::Kind::op && kAssign.count(peek().text)) {
      const std::string op = peek().text;
      next();
      assignment_to(*s, *e, op);
      return s;
    }
    if (e->kind != Expr::Kind::call) fail(peek().loc, "expected '=', '~' or ';' after an expression, found " + describe(peek()));
    s->kind = Stmt::Kind::call;
    s->value = e;
    expect(";");
    return s;
  }

  // `target op value;` once `op` is read: the target must be a variable, indexed or not.
  void assignment_to(Stmt& s, const Expr& target, const std::string& op) {
    s.kind = Stmt::Kind::assign;
    s.op = op;
    if (target.kind == Expr::Kind::index && target.args[0]->kind == Expr::Kind::name) {
      s.name = target.args[0]->text;
      s.name_loc = target.args[0]->loc;
      s.indices = target.indices;
    } else if (target.kind == Expr::Kind::name) {
      s.name = target.text;
      s.name_loc = target.loc;
    } else {
      fail(target.loc, "the left of '" + op + "' must be a variable or an indexed variable");
    }
    s.value = expression();
    expect(";");
  }

  ExprP printable() {
    if (peek().kind == Token::Kind::string_lit) {
      auto e = std::make_shared<Expr>();
      e->kind = Expr::Kind::string_lit;
      e->text = peek().text;
      e->loc = peek().loc;
      next();
      return e;
    }
    return expression();
  }

  // ---- expressions ---------------------------------------------------------------------
  static ExprP node(Expr::Kind kind, const SourceLoc& loc, std::string text, std::vector<ExprP> args) {
    auto e = std::make_shared<Expr>();
    e->kind = kind;
    e->loc = loc;
    e->text = std::move(text);
    e->args = std::move(args);
    return e;
  }

  ExprP expression() {
    Depth d(*this, peek().loc);
    ExprP c = binary(0);
    if (is_op("?")) {
      const SourceLoc loc = peek().loc;
      next();
      ExprP a = expression();
      expect(":");
      ExprP b = expression();
      return node(Expr::Kind::ternary, loc, "?:", {c, a, b});
    }
    return c;
  }
  // A for loop's `lo` stops at ':'; everything else reads `?:` too.
  ExprP expression_no_range() {
    Depth d(*this, peek().loc);
    return binary(0);
  }
  ExprP arithmetic() {
    Depth d(*this, peek().loc);
    return binary(4);
  }

  // Is the statement ahead `name[...]... <- value;`?
  bool old_assignment_ahead() const {
    if (peek().kind != Token::Kind::ident) return false;
    size_t ahead = 1;
    while (is_op("[", ahead)) {
      int depth = 0;
      for (;; ++ahead) {
        const Token& t = peek(ahead);
        if (t.kind == Token::Kind::end) return false;
        if (t.kind != Token::Kind::op) continue;
        if (t.text == "[") ++depth;
        if (t.text == "]" && --depth == 0) break;
      }
      ++ahead;
    }
    return is_op("<-", ahead);
  }

  // In an expression `<-` is '<' then unary minus: split the token in two.
  void split_arrow() {
    if (!is_op("<-")) return;
    Token minus = t_[pos_];
    t_[pos_].text = "<";
    minus.text = "-";
    ++minus.loc.column;
    t_.insert(t_.begin() + static_cast<std::ptrdiff_t>(pos_) + 1, minus);
  }

  // Levels, loosest first, as Stan's reference manual orders them:
  // || && (== !=) (< <= > >=) (+ -) (* / % %/%) (\) (.* ./).
  ExprP binary(int level) {
    static const std::vector<std::vector<std::string>> kLevels = {
        {"||"}, {"&&"}, {"==", "!="}, {"<", "<=", ">", ">="}, {"+", "-"}, {"*", "/", "%", "%/%"}, {"\\"}, {".*", "./"}};
    if (level == static_cast<int>(kLevels.size())) return unary();
    ExprP left = binary(level + 1);
    for (int count = 0;; ++count) {
      split_arrow();
      const Token& t = peek();
      if (t.kind != Token::Kind::op) return left;
      const auto& ops = kLevels[level];
      if (std::find(ops.begin(), ops.end(), t.text) == ops.end()) return left;
      if (count > kMaxOperators) fail(t.loc, "more than " + std::to_string(kMaxOperators) + " operators in a row");
      const std::string op = t.text;
      const SourceLoc loc = t.loc;
      next();
      ExprP right = binary(level + 1);
      left = node(Expr::Kind::binary, loc, op, {left, right});
    }
  }

  ExprP unary() {
    Depth d(*this, peek().loc);
    const Token t = peek();
    if (t.kind == Token::Kind::op && (t.text == "-" || t.text == "!" || t.text == "+")) {
      next();
      ExprP operand = unary();
      if (t.text == "+") return operand;
      return node(Expr::Kind::unary, t.loc, t.text, {operand});
    }
    ExprP base = postfix();
    if (is_op("^") || is_op(".^")) {
      const Token op = peek();
      next();
      ExprP exponent = unary();  // right-associative; binds tighter than unary minus on its left
      return node(Expr::Kind::binary, op.loc, op.text, {base, exponent});
    }
    return base;
  }

  ExprP postfix() {
    ExprP e = primary();
    for (int count = 0;; ++count) {
      if (count > kMaxOperators) fail(peek().loc, "more than " + std::to_string(kMaxOperators) + " indexings");
      if (is_op("[")) {
        const SourceLoc loc = peek().loc;
        next();
        auto ix = node(Expr::Kind::index, loc, "", {e});
        do ix->indices.push_back(index());
        while (accept(","));
        expect("]");
        e = ix;
      } else if (is_op("'")) {
        e = node(Expr::Kind::transpose, peek().loc, "'", {e});
        next();
      } else {
        return e;
      }
    }
  }

  Index index() {
    Index ix;
    if (is_op(":")) {
      next();
      if (is_op(",") || is_op("]")) {
        ix.kind = Index::Kind::all;
      } else {
        ix.kind = Index::Kind::upper;
        ix.hi = expression_no_range();
      }
      return ix;
    }
    ix.lo = expression_no_range();
    if (accept(":")) {
      if (is_op(",") || is_op("]")) {
        ix.kind = Index::Kind::lower;
      } else {
        ix.kind = Index::Kind::range;
        ix.hi = expression_no_range();
      }
    }
    return ix;  // single or multi: the checker tells them apart by type
  }

  ExprP primary() {
    const Token t = peek();
    switch (t.kind) {
      case Token::Kind::int_lit: {
        next();
        auto e = node(Expr::Kind::int_lit, t.loc, t.text, {});
        errno = 0;
        char* end = nullptr;
        e->int_value = std::strtoll(t.text.c_str(), &end, 10);
        if (errno == ERANGE || e->int_value > 2147483647LL) fail(t.loc, "the integer " + t.text + " is too large");
        return e;
      }
      case Token::Kind::real_lit: {
        next();
        auto e = node(Expr::Kind::real_lit, t.loc, t.text, {});
        e->real_value = std::strtod(t.text.c_str(), nullptr);
        return e;
      }
      case Token::Kind::string_lit: fail(t.loc, "a string is only allowed in print and reject");
      case Token::Kind::end: fail(t.loc, "expected an expression, found the end of the file");
      case Token::Kind::ident: {
        next();
        if (!is_op("(")) return node(Expr::Kind::name, t.loc, t.text, {});
        next();
        auto call = node(Expr::Kind::call, t.loc, t.text, {});
        if (!is_op(")")) {
          call->args.push_back(expression());
          if (accept("|")) call->conditional = true;
          if (call->conditional || accept(",")) {
            do call->args.push_back(expression());
            while (accept(","));
          }
        }
        expect(")");
        return call;
      }
      case Token::Kind::op: break;
    }
    if (accept("(")) {
      ExprP e = expression();
      expect(")");
      return e;
    }
    if (t.text == "{" || t.text == "[") {
      next();
      const char* close = t.text == "{" ? "}" : "]";
      auto e = node(t.text == "{" ? Expr::Kind::array_lit : Expr::Kind::row_vector_lit, t.loc, "", {});
      do e->args.push_back(expression());
      while (accept(","));
      expect(close);
      return e;
    }
    fail(t.loc, "expected an expression, found " + describe(t));
  }

  const ProgramFile& file_;
  std::vector<Token> t_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

StanAst parse_syntax(const ProgramFile& file, const std::string& text) {
  return Parser(file, Lexer(file, text).run()).program();
}

}  // namespace vguide::model::stan
