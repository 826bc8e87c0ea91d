#pragma once
/// The program IR of the model front-end and the `.qvr` parser.
///
/// A program is plain data: a list of steps (draw / let / observe / return / data)
/// over expression trees of named values. Nothing here calls LibTorch, so a program
/// can be printed, checked and evaluated in more than one way (ProgramModel
/// evaluates it with LibTorch ops). The `.qvr` syntax is quivers' `program` syntax
/// plus the extensions documented in docs/models.md.
///
/// Example: auto file = vguide::model::parse_program(text, "regression.qvr");
///          const vguide::model::Program& p = file.output_program();
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "vguide/export.hpp"

namespace vguide::model {

/// 1-based line and column in the source text.
struct SourceLoc {
  int line = 1;
  int column = 1;
};

/// An expression tree node.
struct Expr {
  enum class Kind {
    number,  ///< `value`
    name,    ///< `name`
    negate,  ///< -args[0]
    binary,  ///< args[0] op args[1], op one of + - * /
    call,    ///< name(args...), name a function of `expression_functions()`
    index,   ///< args[0][args[1]] (extension): 1-based integer indexing of the first dim
    slice,   ///< args[0][args[1]:args[2]] (extension): 1-based inclusive range of the first dim
  };
  Kind kind = Kind::number;
  double value = 0.0;
  std::string name;
  char op = 0;
  std::vector<Expr> args;
  SourceLoc loc;
};

/// One dimension of a declared shape: a literal size or the name of an integer
/// (an `object` or a scalar integer in the data).
struct Dim {
  int64_t size = -1;  ///< the literal, or -1 if `name` is set
  std::string name;
  SourceLoc loc;
};

struct Step {
  enum class Kind {
    draw,     ///< `v <- F(args)` or `draw v ~ F(args)`: a sample site
    observe,  ///< `observe v ~ F(args)`: a sample site that must have data, or an earlier
              ///< `let`/`data` value that depends on data only
    let,      ///< `let v = expr`
    ret,      ///< `return v`
    data,     ///< `data v` or `data v[N, P]` (extension): a value bound from the data, not a site
  };
  Kind kind = Kind::draw;
  std::string name;
  std::string family;      ///< draw / observe
  std::vector<Expr> args;  ///< draw / observe: the family's arguments
  std::vector<Dim> shape;  ///< draw (`v[J] <- F(..)`) and data (`data X[N, P]`), extensions: declared shape
  Expr value;              ///< let
  SourceLoc loc;           ///< start of the step
  SourceLoc name_loc;      ///< the defined or returned name
  SourceLoc family_loc;    ///< the family name
};

struct Program {
  std::string name;
  std::string domain;
  std::string codomain;
  std::vector<Step> steps;
  SourceLoc loc;
};

/// A parsed `.qvr` file: objects, programs and the chosen output program.
struct VGUIDE_API ProgramFile {
  std::string filename;
  std::vector<std::string> lines;  ///< the source, for error messages
  std::map<std::string, int64_t> objects;
  std::vector<Program> programs;
  std::string output;

  /// The program named by `output`.
  const Program& output_program() const;
  /// An error "file:line:col: message", the source line and a caret line.
  std::string format_error(const SourceLoc& loc, const std::string& message) const;
};

/// A malformed program: `what()` is three lines, "file:line:column: message", the
/// offending source line and a caret under the column. `message()` is the bare
/// message.
class VGUIDE_API ProgramError : public std::runtime_error {
 public:
  ProgramError(const ProgramFile& file, const SourceLoc& loc, const std::string& message);
  const std::string& filename() const noexcept { return filename_; }
  int line() const noexcept { return loc_.line; }
  int column() const noexcept { return loc_.column; }
  const std::string& message() const noexcept { return message_; }

 private:
  std::string filename_;
  SourceLoc loc_;
  std::string message_;
};

/// Deepest nesting of parentheses, unary minus and calls the parser accepts.
inline constexpr int kMaxExprDepth = 100;
/// Most binary operators and indexings the parser accepts on one line.
inline constexpr int kMaxOperators = 1000;

/// Parses `.qvr` text. Every syntax error, unknown family (with the closest known
/// name), wrong argument count, unknown name, duplicate site, bad indentation and a
/// missing or unknown `output` throws ProgramError; no other exception escapes.
VGUIDE_API ProgramFile parse_program(const std::string& text, const std::string& filename = "<program>");
/// Reads and parses a file. @throw ProgramError (also if the file cannot be read).
VGUIDE_API ProgramFile load_program(const std::string& path);

/// The functions usable in expressions and their argument counts.
VGUIDE_API const std::map<std::string, int>& expression_functions();

/// The expression as text (fully parenthesised binary operations).
VGUIDE_API std::string to_string(const Expr& expr);
/// The program in `.qvr` syntax.
VGUIDE_API std::string to_string(const Program& program);

}  // namespace vguide::model
