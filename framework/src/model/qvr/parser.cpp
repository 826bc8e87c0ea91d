// The `.qvr` reader: a line-oriented lexer and a recursive-descent expression
// parser with a depth limit, producing the plain-data program IR
// (vguide/model/program.hpp). Another language's reader sits beside this folder and
// produces the same IR.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "vguide/model/distribution.hpp"
#include "vguide/model/program.hpp"

namespace vguide::model {

namespace {

// ---- lexer -------------------------------------------------------------------------

struct Token {
  enum class Type { ident, number, symbol, end };
  Type type = Type::end;
  std::string text;
  double number = 0.0;
  int column = 1;
};

std::string describe(const Token& t) {
  switch (t.type) {
    case Token::Type::end: return "end of line";
    case Token::Type::number: return "number '" + t.text + "'";
    case Token::Type::ident: return "'" + t.text + "'";
    case Token::Type::symbol: return "'" + t.text + "'";
  }
  return "token";
}

bool ident_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool digit(char c) { return c >= '0' && c <= '9'; }

class Parser {
 public:
  Parser(const std::string& text, const std::string& filename) {
    file_.filename = filename;
    std::string line;
    std::istringstream in(text);
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      file_.lines.push_back(line);
    }
  }

  ProgramFile parse() {
    for (size_t i = 0; i < file_.lines.size(); ++i) parse_line(static_cast<int>(i) + 1, file_.lines[i]);
    finish_program();
    if (file_.output.empty()) {
      int last = static_cast<int>(file_.lines.size());
      while (last > 1 && blank(file_.lines[static_cast<size_t>(last) - 1])) --last;
      fail({std::max(last, 1), 1}, "missing 'output' declaration (expected 'output NAME' naming the program to fit)");
    }
    bool found = false;
    for (const auto& p : file_.programs) found = found || p.name == file_.output;
    if (!found) {
      std::string known;
      for (const auto& p : file_.programs) known += (known.empty() ? "" : ", ") + p.name;
      fail(output_loc_, "unknown program '" + file_.output + "' in 'output'" +
                            (known.empty() ? std::string("; no program is defined") : "; the programs are: " + known));
    }
    return std::move(file_);
  }

 private:
  [[noreturn]] void fail(const SourceLoc& loc, const std::string& message) const {
    throw ProgramError(file_, loc, message);
  }
  [[noreturn]] void fail_at(const Token& t, const std::string& message) const { fail({line_, t.column}, message); }

  static bool blank(const std::string& s) {
    for (char c : s) {
      if (c == '#') return true;
      if (c != ' ' && c != '\t') return false;
    }
    return true;
  }

  // Splits one line (comment already excluded) into tokens.
  void tokenize(const std::string& line, size_t start) {
    tokens_.clear();
    size_t i = start;
    while (i < line.size()) {
      const char c = line[i];
      const int column = static_cast<int>(i) + 1;
      if (c == '#') break;
      if (c == ' ' || c == '\t') {
        ++i;
        continue;
      }
      Token t;
      t.column = column;
      if (ident_start(c)) {
        size_t j = i;
        while (j < line.size() && ident_char(line[j])) ++j;
        t.type = Token::Type::ident;
        t.text = line.substr(i, j - i);
        i = j;
      } else if (digit(c) || (c == '.' && i + 1 < line.size() && digit(line[i + 1]))) {
        size_t j = i;
        while (j < line.size() && digit(line[j])) ++j;
        if (j < line.size() && line[j] == '.') {
          ++j;
          while (j < line.size() && digit(line[j])) ++j;
        }
        if (j < line.size() && (line[j] == 'e' || line[j] == 'E')) {
          size_t k = j + 1;
          if (k < line.size() && (line[k] == '+' || line[k] == '-')) ++k;
          if (k < line.size() && digit(line[k])) {
            j = k;
            while (j < line.size() && digit(line[j])) ++j;
          }
        }
        t.type = Token::Type::number;
        t.text = line.substr(i, j - i);
        t.number = std::strtod(t.text.c_str(), nullptr);
        if (!std::isfinite(t.number)) fail({line_, column}, "number '" + t.text + "' is out of range");
        i = j;
      } else {
        static const char* two[] = {"<-", "->"};
        t.type = Token::Type::symbol;
        bool matched = false;
        for (const char* s : two) {
          if (line.compare(i, 2, s) == 0) {
            t.text = s;
            i += 2;
            matched = true;
            break;
          }
        }
        if (!matched) {
          if (std::string("~=+-*/(),:[]").find(c) == std::string::npos) {
            std::ostringstream msg;
            if (std::isprint(static_cast<unsigned char>(c))) {
              msg << "unexpected character '" << c << "'";
            } else {
              msg << "unexpected byte 0x" << std::hex << static_cast<int>(static_cast<unsigned char>(c));
            }
            fail({line_, column}, msg.str());
          }
          t.text = std::string(1, c);
          ++i;
        }
      }
      tokens_.push_back(std::move(t));
    }
    Token end;
    end.type = Token::Type::end;
    // The end token sits just after the last real token (comments excluded).
    end.column = static_cast<int>(start) + 1;
    if (!tokens_.empty()) end.column = tokens_.back().column + static_cast<int>(tokens_.back().text.size());
    tokens_.push_back(end);
    pos_ = 0;
  }

  const Token& peek(size_t ahead = 0) const {
    const size_t i = std::min(pos_ + ahead, tokens_.size() - 1);
    return tokens_[i];
  }
  Token next() {
    Token t = peek();
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  bool is_symbol(const Token& t, const char* s) const { return t.type == Token::Type::symbol && t.text == s; }
  bool is_keyword(const Token& t, const char* s) const { return t.type == Token::Type::ident && t.text == s; }

  Token expect_symbol(const char* s, const std::string& context) {
    if (!is_symbol(peek(), s)) fail_at(peek(), "expected '" + std::string(s) + "' " + context + ", got " + describe(peek()));
    return next();
  }
  Token expect_ident(const std::string& what) {
    if (peek().type != Token::Type::ident) fail_at(peek(), "expected " + what + ", got " + describe(peek()));
    return next();
  }
  void expect_end() {
    if (peek().type != Token::Type::end) fail_at(peek(), "expected end of line, got " + describe(peek()));
  }

  // ---- lines ---------------------------------------------------------------------

  void parse_line(int number, const std::string& line) {
    line_ = number;
    if (blank(line)) return;
    size_t indent = 0;
    while (indent < line.size() && (line[indent] == ' ' || line[indent] == '\t')) {
      if (line[indent] == '\t') fail({line_, static_cast<int>(indent) + 1}, "bad indentation: tab character (indent with spaces)");
      ++indent;
    }
    tokenize(line, indent);
    operators_ = 0;
    if (indent == 0) {
      finish_program();
      parse_declaration();
      return;
    }
    const SourceLoc here{line_, static_cast<int>(indent) + 1};
    if (!in_program_) fail(here, "bad indentation: an indented line must be a step of a program");
    if (step_indent_ == 0) {
      step_indent_ = indent;
    } else if (indent != step_indent_) {
      fail(here, "bad indentation: expected " + std::to_string(step_indent_) + " spaces like the program's first step, got " +
                     std::to_string(indent));
    }
    parse_step();
  }

  void finish_program() {
    if (!in_program_) return;
    in_program_ = false;
    if (file_.programs.back().steps.empty())
      fail(file_.programs.back().loc, "program '" + file_.programs.back().name + "' has no steps (expected indented steps)");
  }

  void parse_declaration() {
    const Token head = peek();
    if (is_keyword(head, "object")) {
      next();
      const Token name = expect_ident("an object name");
      expect_symbol(":", "after the object name");
      const Token size = peek();
      if (size.type != Token::Type::number || size.number < 1 || std::floor(size.number) != size.number ||
          size.number > 1e15 || size.text.find_first_of(".eE") != std::string::npos)
        fail_at(size, "expected a positive integer size, got " + describe(size));
      next();
      expect_end();
      if (file_.objects.count(name.text)) fail_at(name, "duplicate object '" + name.text + "'");
      file_.objects[name.text] = static_cast<int64_t>(size.number);
    } else if (is_keyword(head, "program")) {
      next();
      const Token name = expect_ident("a program name");
      expect_symbol(":", "after the program name");
      const Token domain = expect_ident("the domain object");
      expect_symbol("->", "between domain and codomain");
      const Token codomain = expect_ident("the codomain object");
      expect_end();
      for (const auto& p : file_.programs)
        if (p.name == name.text)
          fail_at(name, "duplicate program '" + name.text + "' (first defined at line " + std::to_string(p.loc.line) + ")");
      for (const Token* o : {&domain, &codomain})
        if (!file_.objects.count(o->text)) fail_at(*o, "unknown object '" + o->text + "'");
      Program p;
      p.name = name.text;
      p.domain = domain.text;
      p.codomain = codomain.text;
      p.loc = {line_, head.column};
      file_.programs.push_back(std::move(p));
      in_program_ = true;
      step_indent_ = 0;
      defined_.clear();
    } else if (is_keyword(head, "output")) {
      next();
      const Token name = expect_ident("a program name");
      expect_end();
      if (!file_.output.empty())
        fail_at(head, "duplicate 'output' (first given at line " + std::to_string(output_loc_.line) + ")");
      file_.output = name.text;
      output_loc_ = {line_, name.column};
    } else {
      fail_at(head, "expected 'object', 'program' or 'output', got " + describe(head));
    }
  }

  struct Defined {
    int line;
    bool site;
  };

  void define(const Token& name, bool site) {
    auto it = defined_.find(name.text);
    if (it != defined_.end()) {
      const bool either_site = site || it->second.site;
      fail_at(name, std::string(either_site ? "duplicate site '" : "duplicate name '") + name.text +
                        "' (first defined at line " + std::to_string(it->second.line) + ")");
    }
    defined_[name.text] = {line_, site};
  }

  void parse_step() {
    Program& program = file_.programs.back();
    Step step;
    const Token head = peek();
    step.loc = {line_, head.column};
    const bool keyword_form = head.type == Token::Type::ident && !is_symbol(peek(1), "<-") && !is_symbol(peek(1), "[") &&
                              !is_symbol(peek(1), ":");
    if (keyword_form && (head.text == "draw" || head.text == "observe")) {
      next();
      step.kind = head.text == "draw" ? Step::Kind::draw : Step::Kind::observe;
      const Token name = expect_ident("a site name");
      step.name = name.text;
      step.name_loc = {line_, name.column};
      parse_site_shape(step);
      if (!is_symbol(peek(), "~") && !is_symbol(peek(), "<-"))
        fail_at(peek(), "expected '~' or '<-' after the site name, got " + describe(peek()));
      next();
      parse_family_call(step);
      // `observe v ~ F(..)` of a value computed from data (`let`/`data`) scores that value.
      auto earlier = defined_.find(name.text);
      if (step.kind == Step::Kind::observe && earlier != defined_.end() && !earlier->second.site && step.shape.empty()) {
        earlier->second.site = true;
      } else {
        define(name, true);
      }
    } else if (keyword_form && head.text == "let") {
      next();
      const Token name = expect_ident("a name");
      step.kind = Step::Kind::let;
      step.name = name.text;
      step.name_loc = {line_, name.column};
      expect_symbol("=", "after the name");
      step.value = parse_expr(0);
      expect_end();
      define(name, false);
    } else if (keyword_form && head.text == "return") {
      next();
      const Token name = expect_ident("a name to return");
      expect_end();
      if (!defined_.count(name.text)) fail_at(name, "unknown name '" + name.text + "'");
      step.kind = Step::Kind::ret;
      step.name = name.text;
      step.name_loc = {line_, name.column};
    } else if (keyword_form && head.text == "data") {
      next();
      const Token name = expect_ident("a data name");
      step.kind = Step::Kind::data;
      step.name = name.text;
      step.name_loc = {line_, name.column};
      if (is_symbol(peek(), "[")) parse_shape(step);
      expect_end();
      define(name, false);
    } else if (head.type == Token::Type::ident &&
               (is_symbol(peek(1), "<-") || is_symbol(peek(1), "[") || is_symbol(peek(1), ":"))) {
      next();
      step.kind = Step::Kind::draw;
      step.name = head.text;
      step.name_loc = {line_, head.column};
      parse_site_shape(step);
      expect_symbol("<-", "after the site name");
      parse_family_call(step);
      define(head, true);
    } else {
      fail_at(head, "expected a step ('NAME <- Family(...)', 'draw', 'observe', 'let', 'return' or 'data'), got " +
                        describe(head));
    }
    program.steps.push_back(std::move(step));
  }

  // `v[J, 2]` (ours) or `v : Obj` (quivers: one dim, the object's size).
  void parse_site_shape(Step& step) {
    if (is_symbol(peek(), "[")) {
      parse_shape(step);
    } else if (is_symbol(peek(), ":")) {
      next();
      const Token object = expect_ident("an object after ':'");
      if (!file_.objects.count(object.text)) fail_at(object, "unknown object '" + object.text + "'");
      Dim d;
      d.name = object.text;
      d.loc = {line_, object.column};
      step.shape.push_back(std::move(d));
    }
  }

  void parse_shape(Step& step) {
    next();  // '['
    while (true) {
      const Token t = next();
      Dim d;
      d.loc = {line_, t.column};
      if (t.type == Token::Type::number) {
        if (t.number < 1 || std::floor(t.number) != t.number || t.number > 1e15 ||
            t.text.find_first_of(".eE") != std::string::npos)
          fail_at(t, "expected a positive integer size, got " + describe(t));
        d.size = static_cast<int64_t>(t.number);
      } else if (t.type == Token::Type::ident) {
        d.name = t.text;
      } else {
        fail_at(t, "expected a size (an integer or a name), got " + describe(t));
      }
      step.shape.push_back(std::move(d));
      if (is_symbol(peek(), "]")) {
        next();
        return;
      }
      expect_symbol(",", "or ']' in the shape");
    }
  }

  void parse_family_call(Step& step) {
    const Token family = expect_ident("a distribution family");
    step.family = family.text;
    step.family_loc = {line_, family.column};
    const FamilyDoc* doc = find_family(family.text);
    if (!doc) {
      const std::string guess = closest_family(family.text);
      fail_at(family, "unknown family '" + family.text + "'" + (guess.empty() ? "" : "; did you mean '" + guess + "'?"));
    }
    expect_symbol("(", "after the family name");
    if (!is_symbol(peek(), ")")) {
      while (true) {
        step.args.push_back(parse_expr(0));
        if (!is_symbol(peek(), ",")) break;
        next();
      }
    }
    expect_symbol(")", "to close the argument list");
    expect_end();
    if (step.args.size() != doc->params.size()) {
      std::string params;
      for (const auto& p : doc->params) params += (params.empty() ? "" : ", ") + p;
      fail_at(family, family.text + " expects " + std::to_string(doc->params.size()) + " argument" +
                          (doc->params.size() == 1 ? "" : "s") + " (" + params + "), got " +
                          std::to_string(step.args.size()));
    }
  }

  // ---- expressions -----------------------------------------------------------------

  void check_depth(int depth, const Token& at) const {
    if (depth > kMaxExprDepth)
      fail_at(at, "expression nested too deeply (more than " + std::to_string(kMaxExprDepth) + " levels)");
  }

  // Operator chains (a + b + ...) and index chains deepen the tree without
  // nesting: bound them per line so that evaluation cannot exhaust the stack.
  void count_operator(const Token& at) {
    if (++operators_ > kMaxOperators)
      fail_at(at, "expression too long (more than " + std::to_string(kMaxOperators) + " operators on one line)");
  }

  Expr binary(char op, Expr lhs, Expr rhs, const Token& at) {
    Expr e;
    e.kind = Expr::Kind::binary;
    e.op = op;
    e.loc = {line_, at.column};
    e.args.push_back(std::move(lhs));
    e.args.push_back(std::move(rhs));
    return e;
  }

  Expr parse_expr(int depth) {
    Expr lhs = parse_term(depth);
    while (is_symbol(peek(), "+") || is_symbol(peek(), "-")) {
      const Token op = next();
      count_operator(op);
      lhs = binary(op.text[0], std::move(lhs), parse_term(depth), op);
    }
    return lhs;
  }

  Expr parse_term(int depth) {
    Expr lhs = parse_unary(depth);
    while (is_symbol(peek(), "*") || is_symbol(peek(), "/")) {
      const Token op = next();
      count_operator(op);
      lhs = binary(op.text[0], std::move(lhs), parse_unary(depth), op);
    }
    return lhs;
  }

  Expr parse_unary(int depth) {
    if (is_symbol(peek(), "-")) {
      const Token minus = next();
      check_depth(depth + 1, minus);
      Expr e;
      e.kind = Expr::Kind::negate;
      e.loc = {line_, minus.column};
      e.args.push_back(parse_unary(depth + 1));
      return e;
    }
    return parse_primary(depth);
  }

  Expr parse_primary(int depth) {
    const Token t = peek();
    Expr e;
    e.loc = {line_, t.column};
    if (t.type == Token::Type::number) {
      next();
      e.kind = Expr::Kind::number;
      e.value = t.number;
      return e;
    }
    if (is_symbol(t, "(")) {
      next();
      check_depth(depth + 1, t);
      e = parse_expr(depth + 1);
      expect_symbol(")", "to close '('");
      return e;
    }
    if (t.type == Token::Type::ident) {
      next();
      if (is_symbol(peek(), "(")) {
        const auto& functions = expression_functions();
        auto f = functions.find(t.text);
        if (f == functions.end()) fail_at(t, "unknown function '" + t.text + "'");
        check_depth(depth + 1, t);
        next();
        e.kind = Expr::Kind::call;
        e.name = t.text;
        if (!is_symbol(peek(), ")")) {
          while (true) {
            e.args.push_back(parse_expr(depth + 1));
            if (!is_symbol(peek(), ",")) break;
            next();
          }
        }
        expect_symbol(")", "to close the call");
        if (static_cast<int>(e.args.size()) != f->second)
          fail_at(t, t.text + " expects " + std::to_string(f->second) + " argument" + (f->second == 1 ? "" : "s") +
                         ", got " + std::to_string(e.args.size()));
        return e;
      }
      if (!defined_.count(t.text)) fail_at(t, "unknown name '" + t.text + "'");
      e.kind = Expr::Kind::name;
      e.name = t.text;
      while (is_symbol(peek(), "[")) {
        const Token open = next();
        check_depth(depth + 1, open);
        count_operator(open);
        Expr indexed;
        indexed.kind = Expr::Kind::index;
        indexed.loc = {line_, open.column};
        indexed.args.push_back(std::move(e));
        indexed.args.push_back(parse_expr(depth + 1));
        if (is_symbol(peek(), ":")) {
          next();
          indexed.kind = Expr::Kind::slice;
          indexed.args.push_back(parse_expr(depth + 1));
        }
        expect_symbol("]", indexed.kind == Expr::Kind::slice ? "to close the slice" : "to close the index");
        e = std::move(indexed);
      }
      return e;
    }
    fail_at(t, "expected an expression (a number, a name, a call or '('), got " + describe(t));
  }

  ProgramFile file_;
  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int line_ = 1;
  bool in_program_ = false;
  size_t step_indent_ = 0;
  int operators_ = 0;
  std::map<std::string, Defined> defined_;
  SourceLoc output_loc_;
};

}  // namespace

ProgramFile parse_program(const std::string& text, const std::string& filename) {
  return Parser(text, filename).parse();
}

ProgramFile load_program(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ProgramFile empty;
    empty.filename = path;
    throw ProgramError(empty, {1, 1}, "cannot read the program file");
  }
  std::ostringstream text;
  text << in.rdbuf();
  return parse_program(text.str(), path);
}

}  // namespace vguide::model
