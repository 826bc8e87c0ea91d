#pragma once
// The Stan reader's passes: syntax (parser.cpp), then names and types (checker.cpp).
#include <string>

#include "ast.hpp"

namespace vguide::model::stan {

/// Text -> syntax tree. @throw ProgramError, located.
StanAst parse_syntax(const ProgramFile& file, const std::string& text);
/// Resolves names, gives every expression its type and refuses what is not Stan or
/// not supported. @throw ProgramError, located.
void check(const ProgramFile& file, StanAst& ast);

}  // namespace vguide::model::stan
