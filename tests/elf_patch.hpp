#pragma once
// A plugin file's bytes with the ELF structures the loader tests patch: built from a
// real shipped plugin, so that each test breaks exactly one thing in a sound file.
#include <elf.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace vguide::test {

struct ElfBytes {
  std::vector<unsigned char> bytes;

  static ElfBytes read(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) throw std::runtime_error("cannot read " + path.string());
    std::vector<unsigned char> bytes(static_cast<size_t>(in.tellg()));
    in.seekg(0);
    in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    return {std::move(bytes)};
  }
  void write(const std::filesystem::path& path, size_t size) const {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(std::min(size, bytes.size())));
  }
  void write(const std::filesystem::path& path) const { write(path, bytes.size()); }

  template <class T>
  T get(uint64_t offset) const {
    T v;
    std::memcpy(&v, bytes.data() + offset, sizeof v);
    return v;
  }
  template <class T>
  void set(uint64_t offset, const T& v) {
    std::memcpy(bytes.data() + offset, &v, sizeof v);
  }

  Elf64_Ehdr header() const { return get<Elf64_Ehdr>(0); }
  uint64_t phdr_offset(size_t i) const { return header().e_phoff + i * sizeof(Elf64_Phdr); }
  Elf64_Phdr phdr(size_t i) const { return get<Elf64_Phdr>(phdr_offset(i)); }
  Elf64_Shdr shdr(size_t i) const { return get<Elf64_Shdr>(header().e_shoff + i * sizeof(Elf64_Shdr)); }

  size_t phdr_index(uint32_t type) const {
    for (size_t i = 0; i < header().e_phnum; ++i)
      if (phdr(i).p_type == type) return i;
    throw std::runtime_error("no program header of type " + std::to_string(type));
  }

  // The file offset of an address, through the section that holds it.
  uint64_t file_offset(uint64_t addr) const {
    for (size_t i = 0; i < header().e_shnum; ++i) {
      const Elf64_Shdr s = shdr(i);
      if ((s.sh_flags & SHF_ALLOC) && s.sh_type != SHT_NOBITS && addr >= s.sh_addr && addr < s.sh_addr + s.sh_size)
        return s.sh_offset + (addr - s.sh_addr);
    }
    throw std::runtime_error("no section holds address " + std::to_string(addr));
  }

  // The address of a .dynsym symbol.
  uint64_t symbol(const std::string& name) const {
    for (size_t i = 0; i < header().e_shnum; ++i) {
      const Elf64_Shdr s = shdr(i);
      if (s.sh_type != SHT_DYNSYM) continue;
      const Elf64_Shdr names = shdr(s.sh_link);
      for (uint64_t at = s.sh_offset; at < s.sh_offset + s.sh_size; at += sizeof(Elf64_Sym)) {
        const auto sym = get<Elf64_Sym>(at);
        if (name == reinterpret_cast<const char*>(bytes.data() + names.sh_offset + sym.st_name)) return sym.st_value;
      }
    }
    throw std::runtime_error("no dynamic symbol " + name);
  }

  // The descriptor's address: the `vguide_plugin` alias is a pointer to it, filled in
  // by a relative relocation whose addend is the descriptor's address.
  uint64_t descriptor_address() const {
    const uint64_t alias = symbol("vguide_plugin");
    for (size_t i = 0; i < header().e_shnum; ++i) {
      const Elf64_Shdr s = shdr(i);
      if (s.sh_type != SHT_RELA) continue;
      for (uint64_t at = s.sh_offset; at < s.sh_offset + s.sh_size; at += sizeof(Elf64_Rela)) {
        const auto r = get<Elf64_Rela>(at);
        if (r.r_offset == alias) return static_cast<uint64_t>(r.r_addend);
      }
    }
    throw std::runtime_error("no relocation fills vguide_plugin");
  }
};

}  // namespace vguide::test
