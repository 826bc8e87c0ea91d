// The program IR shared by the model front-ends: a program file's errors, the
// expression functions and the IR printed back as `.qvr` text. The `.qvr` reader is
// in qvr/parser.cpp.
#include "vguide/model/program.hpp"

#include <sstream>
#include <stdexcept>

namespace vguide::model {

const Program& ProgramFile::output_program() const {
  for (const auto& p : programs)
    if (p.name == output) return p;
  throw std::logic_error("ProgramFile: no program named '" + output + "'");
}

std::string ProgramFile::format_error(const SourceLoc& loc, const std::string& message) const {
  std::ostringstream s;
  s << filename << ":" << loc.line << ":" << loc.column << ": " << message;
  std::string text =
      loc.line >= 1 && static_cast<size_t>(loc.line) <= lines.size() ? lines[static_cast<size_t>(loc.line) - 1] : "";
  // Control bytes (a NUL would end what()) are shown as '?', one byte for one byte.
  for (char& c : text)
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) c = '?';
  s << "\n" << text << "\n";
  for (int c = 1; c < loc.column; ++c) {
    const size_t i = static_cast<size_t>(c) - 1;
    s << (i < text.size() && text[i] == '\t' ? '\t' : ' ');
  }
  s << "^";
  return s.str();
}

ProgramError::ProgramError(const ProgramFile& file, const SourceLoc& loc, const std::string& message)
    : std::runtime_error(file.format_error(loc, message)), filename_(file.filename), loc_(loc), message_(message) {}

const std::map<std::string, int>& expression_functions() {
  static const std::map<std::string, int> functions = {
      {"exp", 1},   {"log", 1},   {"sigmoid", 1}, {"softplus", 1},  {"abs", 1}, {"sqrt", 1},
      {"log1p", 1}, {"expm1", 1}, {"tanh", 1},    {"logit", 1},     {"inv_logit", 1},
      {"sum", 1},   {"log_sum_exp", 1}, {"pow", 2},   {"dot", 2},
      {"cholesky", 1}, {"add_diag", 2}, {"cov_exp_quad", 3},
  };
  return functions;
}

namespace {

std::string format_number(double v) {
  std::ostringstream s;
  s.precision(17);
  s << v;
  std::string text = s.str();
  if (text.find_first_of(".eEn") == std::string::npos) text += ".0";
  return text;
}

}  // namespace

std::string to_string(const Expr& e) {
  switch (e.kind) {
    case Expr::Kind::number: return format_number(e.value);
    case Expr::Kind::name: return e.name;
    case Expr::Kind::negate: return "-" + to_string(e.args[0]);
    case Expr::Kind::binary: return "(" + to_string(e.args[0]) + " " + e.op + " " + to_string(e.args[1]) + ")";
    case Expr::Kind::index: return to_string(e.args[0]) + "[" + to_string(e.args[1]) + "]";
    case Expr::Kind::slice:
      return to_string(e.args[0]) + "[" + to_string(e.args[1]) + ":" + to_string(e.args[2]) + "]";
    case Expr::Kind::call: {
      std::string s = e.name + "(";
      for (size_t i = 0; i < e.args.size(); ++i) s += (i ? ", " : "") + to_string(e.args[i]);
      return s + ")";
    }
  }
  return "";
}

std::string to_string(const Program& p) {
  std::ostringstream s;
  s << "program " << p.name << " : " << p.domain << " -> " << p.codomain << "\n";
  for (const auto& step : p.steps) {
    s << "    ";
    auto call = [&] {
      std::string c = step.family + "(";
      for (size_t i = 0; i < step.args.size(); ++i) c += (i ? ", " : "") + to_string(step.args[i]);
      return c + ")";
    };
    auto shape = [&] {
      if (step.shape.empty()) return std::string();
      std::string c = "[";
      for (size_t i = 0; i < step.shape.size(); ++i)
        c += (i ? ", " : "") + (step.shape[i].name.empty() ? std::to_string(step.shape[i].size) : step.shape[i].name);
      return c + "]";
    };
    switch (step.kind) {
      case Step::Kind::draw: s << "draw " << step.name << shape() << " ~ " << call(); break;
      case Step::Kind::observe: s << "observe " << step.name << shape() << " ~ " << call(); break;
      case Step::Kind::let: s << "let " << step.name << " = " << to_string(step.value); break;
      case Step::Kind::ret: s << "return " << step.name; break;
      case Step::Kind::data: s << "data " << step.name << shape(); break;
    }
    s << "\n";
  }
  return s.str();
}

}  // namespace vguide::model
