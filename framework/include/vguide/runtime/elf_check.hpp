#pragma once
// The loader's check of a plugin file before it is handed to dlopen.
//
// dlopen trusts the file: it maps segments that reach past the end of a truncated
// copy (the first touch then faults with SIGBUS), follows the dynamic section's
// addresses without bounds, and calls DT_INIT wherever it points. The check parses
// the ELF headers with glibc's <elf.h> and refuses a file that the dynamic loader
// could not map and relocate safely; docs/plugins.md lists the checks.
#include <cstddef>
#include <filesystem>
#include <string>

#include "vguide/export.hpp"

namespace vguide {

/// Why the file at `path` is not a sound ELF shared object for this machine: the
/// cause half of a loader message, naming the structure at fault (e.g.
/// `truncated: segment 2 ends at byte 81920 but the file has 4096 bytes`); empty
/// if the ELF header, program headers, section headers and dynamic section are
/// consistent and inside the file.
///
/// Example: if (auto why = vguide::elf_problem(path); !why.empty()) refuse(path, why);
VGUIDE_API std::string elf_problem(const std::filesystem::path& path);

/// The same check over a file's bytes already in memory.
VGUIDE_API std::string elf_problem(const unsigned char* data, std::size_t size);

}  // namespace vguide
