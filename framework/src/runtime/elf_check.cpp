#include "vguide/runtime/elf_check.hpp"

#include <cctype>
#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <vector>

namespace vguide {
namespace {

// Only the host's own machine is accepted: the plugin runs in this process.
#if defined(__x86_64__)
constexpr Elf64_Half kHostMachine = EM_X86_64;
constexpr uint32_t kRelativeReloc = R_X86_64_RELATIVE;
#elif defined(__aarch64__)
constexpr Elf64_Half kHostMachine = EM_AARCH64;
constexpr uint32_t kRelativeReloc = R_AARCH64_RELATIVE;
#else
#error "elf_check.cpp knows the ELF machine of x86-64 and AArch64 hosts only"
#endif
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
constexpr unsigned char kHostData = ELFDATA2LSB;
#else
constexpr unsigned char kHostData = ELFDATA2MSB;
#endif
constexpr uint64_t kPage = 4096;  // the dynamic loader protects RELRO in whole pages

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string machine_name(Elf64_Half m) {
  static const std::map<Elf64_Half, const char*> names{
      {EM_386, "x86"},         {EM_X86_64, "x86-64"}, {EM_ARM, "ARM"},     {EM_AARCH64, "AArch64"},
      {EM_PPC, "PowerPC"},     {EM_PPC64, "PowerPC64"}, {EM_S390, "s390"}, {EM_RISCV, "RISC-V"},
      {EM_MIPS, "MIPS"},       {EM_SPARCV9, "SPARC V9"}, {EM_IA_64, "IA-64"}};
  const auto it = names.find(m);
  return "ELF machine " + std::to_string(m) + (it == names.end() ? "" : std::string(" (") + it->second + ")");
}

std::string segment_name(uint32_t type) {
  switch (type) {
    case PT_LOAD: return "PT_LOAD";
    case PT_DYNAMIC: return "PT_DYNAMIC";
    case PT_INTERP: return "PT_INTERP";
    case PT_NOTE: return "PT_NOTE";
    case PT_PHDR: return "PT_PHDR";
    case PT_TLS: return "PT_TLS";
    case PT_GNU_EH_FRAME: return "PT_GNU_EH_FRAME";
    case PT_GNU_STACK: return "PT_GNU_STACK";
    case PT_GNU_RELRO: return "PT_GNU_RELRO";
    case PT_GNU_PROPERTY: return "PT_GNU_PROPERTY";
    default: return "type " + hex(type);
  }
}

const char* tag_name(int64_t tag) {
  switch (tag) {
    case DT_NEEDED: return "DT_NEEDED";
    case DT_SONAME: return "DT_SONAME";
    case DT_RPATH: return "DT_RPATH";
    case DT_RUNPATH: return "DT_RUNPATH";
    case DT_STRTAB: return "DT_STRTAB";
    case DT_SYMTAB: return "DT_SYMTAB";
    case DT_HASH: return "DT_HASH";
    case DT_GNU_HASH: return "DT_GNU_HASH";
    case DT_RELA: return "DT_RELA";
    case DT_JMPREL: return "DT_JMPREL";
    case DT_INIT: return "DT_INIT";
    case DT_FINI: return "DT_FINI";
    case DT_INIT_ARRAY: return "DT_INIT_ARRAY";
    case DT_FINI_ARRAY: return "DT_FINI_ARRAY";
    case DT_PREINIT_ARRAY: return "DT_PREINIT_ARRAY";
    case DT_VERSYM: return "DT_VERSYM";
    case DT_VERNEED: return "DT_VERNEED";
    case DT_VERDEF: return "DT_VERDEF";
    case DT_PLTGOT: return "DT_PLTGOT";
    case DT_STRSZ: return "DT_STRSZ";
    case DT_RELASZ: return "DT_RELASZ";
    case DT_PLTRELSZ: return "DT_PLTRELSZ";
    case DT_INIT_ARRAYSZ: return "DT_INIT_ARRAYSZ";
    case DT_FINI_ARRAYSZ: return "DT_FINI_ARRAYSZ";
    case DT_PREINIT_ARRAYSZ: return "DT_PREINIT_ARRAYSZ";
    case DT_VERNEEDNUM: return "DT_VERNEEDNUM";
    case DT_VERDEFNUM: return "DT_VERDEFNUM";
    case DT_SYMENT: return "DT_SYMENT";
    case DT_RELAENT: return "DT_RELAENT";
    case DT_PLTREL: return "DT_PLTREL";
    case DT_RELACOUNT: return "DT_RELACOUNT";
    default: return "?";
  }
}

// An address-valued dynamic entry: the dynamic loader follows it after adding the
// load address, so it must name the start of a section of the right kind, and its
// size entry (if any) that section's size. The sections are the reference because
// nothing at run time reads them: a flipped byte in a program header or the dynamic
// section then disagrees with them.
struct AddressTag {
  int64_t tag;
  uint32_t section_type;  // SHT_NULL: any allocated section with `flags`
  uint64_t flags;         // section flags the target needs (SHF_EXECINSTR for code)
  int64_t size_tag;       // 0: none; the entry's extent, which must end a section of that type
  int64_t count_tag;      // 0: none; must equal the section's sh_info (the entry count)
};
constexpr AddressTag kAddressTags[] = {
    {DT_STRTAB, SHT_STRTAB, 0, DT_STRSZ, 0},
    {DT_SYMTAB, SHT_DYNSYM, 0, 0, 0},
    {DT_HASH, SHT_HASH, 0, 0, 0},
    {DT_GNU_HASH, SHT_GNU_HASH, 0, 0, 0},
    {DT_RELA, SHT_RELA, 0, DT_RELASZ, 0},
    {DT_JMPREL, SHT_RELA, 0, DT_PLTRELSZ, 0},
    {DT_INIT, SHT_NULL, SHF_EXECINSTR, 0, 0},
    {DT_FINI, SHT_NULL, SHF_EXECINSTR, 0, 0},
    {DT_INIT_ARRAY, SHT_INIT_ARRAY, 0, DT_INIT_ARRAYSZ, 0},
    {DT_FINI_ARRAY, SHT_FINI_ARRAY, 0, DT_FINI_ARRAYSZ, 0},
    {DT_PREINIT_ARRAY, SHT_PREINIT_ARRAY, 0, DT_PREINIT_ARRAYSZ, 0},
    {DT_VERSYM, SHT_GNU_versym, 0, 0, 0},
    {DT_VERNEED, SHT_GNU_verneed, 0, 0, DT_VERNEEDNUM},
    {DT_VERDEF, SHT_GNU_verdef, 0, 0, DT_VERDEFNUM},
    {DT_PLTGOT, SHT_NULL, SHF_WRITE, 0, 0},
};
// Entries whose value indexes the dynamic string table.
constexpr int64_t kStringTags[] = {DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH};

// Sections the plugin writes after it is loaded (.data, .bss and their kin), which
// the RELRO pages must not cover. The others that are writable are written by the
// dynamic loader only (.got, .init_array, .data.rel.ro, ...): RELRO may hold them.
bool written_after_load(const std::string& name, const Elf64_Shdr& s) {
  if (s.sh_flags & SHF_TLS) return false;  // each thread's copy lives elsewhere
  return s.sh_type == SHT_NOBITS || name.rfind(".bss", 0) == 0 ||
         (name.rfind(".data", 0) == 0 && name.rfind(".data.rel.ro", 0) != 0);
}

class Checker {
 public:
  Checker(const unsigned char* data, std::size_t size) : data_(data), size_(size) {}

  std::string run() {
    std::string why = header();
    if (why.empty()) why = program_headers();
    if (why.empty()) why = sections();
    if (why.empty()) why = segments_against_sections();
    if (why.empty()) why = dynamic_section();
    return why;
  }

 private:
  // offset + size, or false if it overflows: a corrupt size must not wrap around.
  static bool end_of(uint64_t offset, uint64_t size, uint64_t* end) { return !__builtin_add_overflow(offset, size, end); }

  std::string beyond_file(const std::string& what, uint64_t offset, uint64_t size) const {
    uint64_t end = 0;
    if (!end_of(offset, size, &end))
      return "corrupt: " + what + " has offset " + std::to_string(offset) + " and size " + std::to_string(size) +
             ", past any file";
    if (end > size_)
      return "truncated: " + what + " ends at byte " + std::to_string(end) + " but the file has " +
             std::to_string(size_) + " bytes";
    return {};
  }

  template <class T>
  T read(uint64_t offset) const {  // callers have checked offset + sizeof(T) <= size_
    T value;
    std::memcpy(&value, data_ + offset, sizeof(T));
    return value;
  }

  std::string header() {
    if (size_ < SELFMAG || std::memcmp(data_, ELFMAG, SELFMAG) != 0) return "not a shared library (no ELF header)";
    if (size_ < EI_NIDENT) return beyond_file("the ELF identification", 0, EI_NIDENT);
    const unsigned char cls = data_[EI_CLASS], encoding = data_[EI_DATA];
    if (cls == ELFCLASS32) return "a 32-bit ELF file (ELFCLASS32); this host loads 64-bit shared libraries (ELFCLASS64)";
    if (cls != ELFCLASS64) return "corrupt ELF header: class " + std::to_string(cls) + " is neither 32- nor 64-bit";
    if (encoding != kHostData) {
      if (encoding != ELFDATA2LSB && encoding != ELFDATA2MSB)
        return "corrupt ELF header: data encoding " + std::to_string(encoding) + " is neither little- nor big-endian";
      return std::string("a ") + (encoding == ELFDATA2MSB ? "big" : "little") + "-endian ELF file; this host is " +
             (kHostData == ELFDATA2MSB ? "big" : "little") + "-endian";
    }
    if (data_[EI_VERSION] != EV_CURRENT)
      return "corrupt ELF header: version " + std::to_string(data_[EI_VERSION]) + " (expected 1)";
    if (auto why = beyond_file("the ELF header", 0, sizeof(Elf64_Ehdr)); !why.empty()) return why;
    eh_ = read<Elf64_Ehdr>(0);
    if (eh_.e_machine != kHostMachine)
      return "built for another machine: " + machine_name(eh_.e_machine) + "; this host is " + machine_name(kHostMachine);
    if (eh_.e_type != ET_DYN) {
      const char* kind = eh_.e_type == ET_EXEC ? "an executable (ET_EXEC)"
                         : eh_.e_type == ET_REL ? "a relocatable object (ET_REL)"
                         : eh_.e_type == ET_CORE ? "a core dump (ET_CORE)"
                                                 : nullptr;
      return "not a shared library: " + (kind ? std::string(kind) : "ELF type " + std::to_string(eh_.e_type)) +
             "; plugins are shared objects (ET_DYN)";
    }
    return {};
  }

  std::string program_headers() {
    if (eh_.e_phentsize != sizeof(Elf64_Phdr))
      return "corrupt ELF header: program header size " + std::to_string(eh_.e_phentsize) + " (expected " +
             std::to_string(sizeof(Elf64_Phdr)) + ")";
    if (eh_.e_phnum == 0 || eh_.e_phnum == PN_XNUM)
      return "corrupt ELF header: " + std::to_string(eh_.e_phnum) + " program headers";
    if (auto why = beyond_file("the program header table", eh_.e_phoff, uint64_t{eh_.e_phnum} * sizeof(Elf64_Phdr));
        !why.empty())
      return why;
    for (uint64_t i = 0; i < eh_.e_phnum; ++i) phdrs_.push_back(read<Elf64_Phdr>(eh_.e_phoff + i * sizeof(Elf64_Phdr)));

    // Every segment's bytes must be in the file: mapping past its end is what faults.
    int dynamic = 0;
    const Elf64_Phdr* previous_load = nullptr;
    for (std::size_t i = 0; i < phdrs_.size(); ++i) {
      const Elf64_Phdr& p = phdrs_[i];
      const std::string name = "segment " + std::to_string(i);
      if (auto why = beyond_file(name, p.p_offset, p.p_filesz); !why.empty()) return why;
      uint64_t end = 0;
      if (!end_of(p.p_vaddr, p.p_memsz, &end))
        return "corrupt " + name + " (" + segment_name(p.p_type) + "): address " + hex(p.p_vaddr) + " + size " +
               hex(p.p_memsz) + " overflows";
      if (p.p_type == PT_DYNAMIC) ++dynamic;
      if (p.p_type != PT_LOAD) continue;
      if (p.p_filesz > p.p_memsz)
        return "corrupt " + name + " (PT_LOAD): " + std::to_string(p.p_filesz) + " bytes in the file but " +
               std::to_string(p.p_memsz) + " in memory";
      // The loader reserves the span from the first to the last PT_LOAD and maps each
      // inside it: out of order, one would land on memory the process already uses.
      if (previous_load && p.p_vaddr < previous_load->p_vaddr + previous_load->p_memsz)
        return "corrupt " + name + " (PT_LOAD): it starts at " + hex(p.p_vaddr) +
               ", before the end of the previous loadable segment";
      previous_load = &p;
    }
    if (previous_load == nullptr) return "not a shared library: no loadable segment (PT_LOAD)";
    if (dynamic == 0) return "not a shared library: no dynamic segment (PT_DYNAMIC)";
    if (dynamic > 1) return "corrupt program headers: " + std::to_string(dynamic) + " dynamic segments (PT_DYNAMIC)";
    return {};
  }

  std::string sections() {
    // Nothing at run time needs the section headers, so a corrupt program header or
    // dynamic entry disagrees with them; the checks below need them.
    if (eh_.e_shoff == 0 || eh_.e_shnum == 0) return "corrupt ELF header: no section header table";
    if (eh_.e_shentsize != sizeof(Elf64_Shdr))
      return "corrupt ELF header: section header size " + std::to_string(eh_.e_shentsize) + " (expected " +
             std::to_string(sizeof(Elf64_Shdr)) + ")";
    if (auto why = beyond_file("the section header table", eh_.e_shoff, uint64_t{eh_.e_shnum} * sizeof(Elf64_Shdr));
        !why.empty())
      return why;
    for (uint64_t i = 0; i < eh_.e_shnum; ++i) shdrs_.push_back(read<Elf64_Shdr>(eh_.e_shoff + i * sizeof(Elf64_Shdr)));
    if (eh_.e_shstrndx >= shdrs_.size() || shdrs_[eh_.e_shstrndx].sh_type != SHT_STRTAB)
      return "corrupt ELF header: section names (section " + std::to_string(eh_.e_shstrndx) + ") are not a string table";
    for (std::size_t i = 0; i < shdrs_.size(); ++i) {
      const Elf64_Shdr& s = shdrs_[i];
      if (s.sh_type == SHT_NOBITS) continue;
      if (auto why = beyond_file("section " + std::to_string(i), s.sh_offset, s.sh_size); !why.empty()) return why;
    }
    return {};
  }

  std::string section_name(const Elf64_Shdr& s) const {
    const Elf64_Shdr& names = shdrs_[eh_.e_shstrndx];
    if (s.sh_name >= names.sh_size) return {};
    const char* begin = reinterpret_cast<const char*>(data_ + names.sh_offset + s.sh_name);
    // The name goes into a one-line message: a corrupted byte is shown as '?'.
    std::string name(begin, std::min<size_t>(strnlen(begin, names.sh_size - s.sh_name), 64));
    for (char& c : name)
      if (!std::isprint(static_cast<unsigned char>(c))) c = '?';
    return name;
  }

  bool allocated(const Elf64_Shdr& s) const { return (s.sh_flags & SHF_ALLOC) && s.sh_size > 0; }

  std::string segments_against_sections() {
    // Each allocated section lies in a PT_LOAD that maps its file bytes to its
    // address with the permissions it needs.
    for (std::size_t i = 0; i < shdrs_.size(); ++i) {
      const Elf64_Shdr& s = shdrs_[i];
      if (!allocated(s) || (s.sh_type == SHT_NOBITS && (s.sh_flags & SHF_TLS))) continue;  // .tbss takes no space
      const bool in_file = s.sh_type != SHT_NOBITS;
      const Elf64_Phdr* home = nullptr;
      for (const auto& p : phdrs_) {
        const uint64_t extent = in_file ? p.p_filesz : p.p_memsz;
        if (p.p_type == PT_LOAD && s.sh_addr >= p.p_vaddr && s.sh_size <= extent &&
            s.sh_addr - p.p_vaddr <= extent - s.sh_size)
          home = &p;
      }
      const std::string what = "section " + std::to_string(i) + " (" + section_name(s) + ")";
      if (home == nullptr)
        return "corrupt program headers: no loadable segment holds " + what + " at " + hex(s.sh_addr);
      if (in_file && s.sh_offset - home->p_offset != s.sh_addr - home->p_vaddr)
        return "corrupt program headers: the segment holding " + what + " maps other bytes of the file to it";
      const uint32_t need = PF_R | ((s.sh_flags & SHF_WRITE) ? PF_W : 0) | ((s.sh_flags & SHF_EXECINSTR) ? PF_X : 0);
      if ((home->p_flags & need) != need)
        return "corrupt program headers: the segment holding " + what + " lacks a permission it needs";
    }
    // The segments the loader reads or protects cover whole sections of their kind.
    for (std::size_t i = 0; i < phdrs_.size(); ++i) {
      const Elf64_Phdr& p = phdrs_[i];
      const std::string name = "corrupt segment " + std::to_string(i) + " (" + segment_name(p.p_type) + "): ";
      if (p.p_type == PT_GNU_RELRO) {
        if (auto why = relro(p); !why.empty()) return name + why;
        continue;
      }
      uint32_t type = SHT_NULL;
      uint64_t flags = 0;
      switch (p.p_type) {
        case PT_DYNAMIC: type = SHT_DYNAMIC; break;
        case PT_NOTE:
        case PT_GNU_PROPERTY: type = SHT_NOTE; break;
        case PT_TLS: flags = SHF_TLS; break;
        case PT_INTERP:
        case PT_GNU_EH_FRAME: break;  // any section type (lld marks .eh_frame_hdr SHT_X86_64_UNWIND)
        case PT_PHDR:
          if (p.p_offset != eh_.e_phoff || p.p_filesz != uint64_t{eh_.e_phnum} * sizeof(Elf64_Phdr))
            return name + "it is not the program header table";
          continue;
        default: continue;  // PT_LOAD is checked above; the loader ignores the others
      }
      const Elf64_Shdr* first = nullptr;
      bool ends = false;
      for (const auto& s : shdrs_) {
        if (!(s.sh_flags & SHF_ALLOC) || (type != SHT_NULL && s.sh_type != type) || (s.sh_flags & flags) != flags) continue;
        if (s.sh_addr == p.p_vaddr && (s.sh_type == SHT_NOBITS || s.sh_offset == p.p_offset)) first = &s;
        if (s.sh_addr + s.sh_size == p.p_vaddr + p.p_memsz) ends = true;
      }
      if (first == nullptr || !ends)
        return name + "it does not cover whole sections of its kind (" + hex(p.p_vaddr) + " to " +
               hex(p.p_vaddr + p.p_memsz) + ")";
      if (p.p_type == PT_DYNAMIC) dynamic_ = &p;
    }
    return {};
  }

  // The loader makes RELRO's whole pages read-only once it has relocated: they must
  // lie in a loadable segment and hold no section the plugin writes later.
  std::string relro(const Elf64_Phdr& r) const {
    const uint64_t begin = r.p_vaddr & ~(kPage - 1), end = (r.p_vaddr + r.p_memsz) & ~(kPage - 1);
    bool inside = false;
    for (const auto& p : phdrs_)
      if (p.p_type == PT_LOAD && r.p_vaddr >= p.p_vaddr && r.p_vaddr + r.p_memsz <= p.p_vaddr + p.p_memsz) inside = true;
    if (!inside) return "it lies outside every loadable segment";
    for (const auto& s : shdrs_) {
      if (!allocated(s) || !(s.sh_flags & SHF_WRITE) || !written_after_load(section_name(s), s)) continue;
      if (s.sh_addr < end && s.sh_addr + s.sh_size > begin)
        return "it would make the writable section " + section_name(s) + " read-only";
    }
    return {};
  }

  const Elf64_Shdr* section_at(uint64_t addr, uint32_t type, uint64_t flags) const {
    for (const auto& s : shdrs_)
      if (allocated(s) && s.sh_addr == addr && (type == SHT_NULL || s.sh_type == type) && (s.sh_flags & flags) == flags)
        return &s;
    return nullptr;
  }

  // A function symbol (of .dynsym or .symtab) at `addr` in an executable section.
  bool function_at(uint64_t addr) const {
    bool in_code = false;
    for (const auto& s : shdrs_)
      if (allocated(s) && (s.sh_flags & SHF_EXECINSTR) && addr >= s.sh_addr && addr - s.sh_addr < s.sh_size) in_code = true;
    for (const auto& s : shdrs_) {
      if (!in_code || (s.sh_type != SHT_DYNSYM && s.sh_type != SHT_SYMTAB)) continue;
      for (uint64_t at = s.sh_offset; at + sizeof(Elf64_Sym) <= s.sh_offset + s.sh_size; at += sizeof(Elf64_Sym)) {
        const auto sym = read<Elf64_Sym>(at);
        if (ELF64_ST_TYPE(sym.st_info) == STT_FUNC && sym.st_value == addr) return true;
      }
    }
    return false;
  }

  static bool covers(uint64_t addr, uint64_t size, const Elf64_Shdr& s) {
    return s.sh_addr >= addr && s.sh_addr - addr <= size && s.sh_size <= size - (s.sh_addr - addr);
  }

  bool ends_section(uint64_t end, uint32_t type) const {
    for (const auto& s : shdrs_)
      if (allocated(s) && s.sh_type == type && s.sh_addr + s.sh_size == end) return true;
    return false;
  }

  std::string dynamic_section() {
    const std::string corrupt = "corrupt dynamic section: ";
    // Entries up to DT_NULL; the segment's bytes are in the file (checked above).
    std::map<int64_t, uint64_t> value;  // the loader keeps the last of each tag
    std::vector<std::pair<std::size_t, const Elf64_Dyn*>> entries;
    std::vector<Elf64_Dyn> dyn(dynamic_->p_filesz / sizeof(Elf64_Dyn));
    std::memcpy(dyn.data(), data_ + dynamic_->p_offset, dyn.size() * sizeof(Elf64_Dyn));
    bool terminated = false;
    for (std::size_t i = 0; i < dyn.size() && !terminated; ++i) {
      const int64_t tag = dyn[i].d_tag;
      if (tag == DT_NULL) {
        terminated = true;
        continue;
      }
      if (tag != DT_NEEDED && value.count(tag) && std::strcmp(tag_name(tag), "?") != 0)
        return corrupt + "entry " + std::to_string(i) + " repeats " + tag_name(tag);
      value[tag] = dyn[i].d_un.d_val;
      entries.emplace_back(i, &dyn[i]);
    }
    if (!terminated) return corrupt + "no DT_NULL entry ends it";
    for (const int64_t required : {DT_STRTAB, DT_SYMTAB})
      if (!value.count(required)) return corrupt + "no " + tag_name(required) + " entry";
    if (!value.count(DT_GNU_HASH) && !value.count(DT_HASH)) return corrupt + "no symbol hash table (DT_GNU_HASH, DT_HASH)";

    for (const auto& t : kAddressTags) {
      if (!value.count(t.tag)) continue;
      const uint64_t addr = value[t.tag];
      const Elf64_Shdr* s = section_at(addr, t.section_type, t.flags);
      // -Wl,-init=f makes DT_INIT a function inside .text: accept a named function.
      if (s == nullptr && (t.flags & SHF_EXECINSTR) && function_at(addr)) continue;
      if (s == nullptr) return corrupt + tag_name(t.tag) + " " + hex(addr) + " is not the start of a section of its kind";
      if (t.size_tag != 0) {
        if (!value.count(t.size_tag)) return corrupt + tag_name(t.tag) + " has no " + tag_name(t.size_tag);
        uint64_t end = 0;
        if (!end_of(addr, value[t.size_tag], &end) || !ends_section(end, s->sh_type))
          return corrupt + tag_name(t.size_tag) + " " + std::to_string(value[t.size_tag]) + " does not end a section";
      }
      if (t.count_tag != 0 && (!value.count(t.count_tag) || value[t.count_tag] != s->sh_info))
        return corrupt + tag_name(t.count_tag) + " does not match the section's " + std::to_string(s->sh_info) + " entries";
      if (t.tag == DT_STRTAB) strtab_ = s;
      if (t.tag == DT_RELA) rela_ = s;
    }
    // The reverse: every table the linker made is in use, or the loader would skip
    // it (no PLT relocations: calls jump to unrelocated addresses; no symbol
    // versions: it reads the versions through a null entry).
    for (const auto& s : shdrs_) {
      if (!allocated(s)) continue;
      if (s.sh_type == SHT_RELA) {
        const bool covered = (value.count(DT_RELA) && covers(value[DT_RELA], value[DT_RELASZ], s)) ||
                             (value.count(DT_JMPREL) && covers(value[DT_JMPREL], value[DT_PLTRELSZ], s));
        if (!covered) return corrupt + "no DT_RELA or DT_JMPREL covers the relocations " + section_name(s);
        continue;
      }
      for (const auto& t : kAddressTags)
        if (t.section_type == s.sh_type && t.section_type != SHT_STRTAB && t.section_type != SHT_RELA &&
            t.section_type != SHT_NULL && (!value.count(t.tag) || value[t.tag] != s.sh_addr))
          return corrupt + "no " + tag_name(t.tag) + " entry for section " + section_name(s);
    }
    // The loader asserts these (an abort, not an error) or follows them without a check.
    if (value.count(DT_SYMENT) && value[DT_SYMENT] != sizeof(Elf64_Sym))
      return corrupt + "DT_SYMENT is " + std::to_string(value[DT_SYMENT]) + " (expected " +
             std::to_string(sizeof(Elf64_Sym)) + ")";
    if (value.count(DT_RELA) && value[DT_RELAENT] != sizeof(Elf64_Rela))
      return corrupt + "DT_RELAENT is " + std::to_string(value[DT_RELAENT]) + " (expected " +
             std::to_string(sizeof(Elf64_Rela)) + ")";
    if ((value.count(DT_JMPREL) || value.count(DT_PLTREL)) && value[DT_PLTREL] != DT_RELA)
      return corrupt + "DT_PLTREL is " + std::to_string(value[DT_PLTREL]) + " (expected DT_RELA)";
    // The first DT_RELACOUNT relocations are applied as relative ones without looking.
    if (value.count(DT_RELACOUNT)) {
      uint64_t relative = 0;
      const uint64_t count = rela_ ? value[DT_RELASZ] / sizeof(Elf64_Rela) : 0;
      for (uint64_t at = rela_ ? rela_->sh_offset : 0; relative < count && at + sizeof(Elf64_Rela) <= size_;
           at += sizeof(Elf64_Rela), ++relative)
        if (ELF64_R_TYPE(read<Elf64_Rela>(at).r_info) != kRelativeReloc) break;
      if (value[DT_RELACOUNT] > relative)
        return corrupt + "DT_RELACOUNT " + std::to_string(value[DT_RELACOUNT]) + " exceeds the " +
               std::to_string(relative) + " relative relocations";
    }
    // Names (libraries needed, search paths) are NUL-terminated strings of DT_STRTAB.
    for (const auto& [i, d] : entries) {
      if (std::find(std::begin(kStringTags), std::end(kStringTags), d->d_tag) == std::end(kStringTags)) continue;
      const uint64_t at = d->d_un.d_val;
      if (at >= strtab_->sh_size || !std::memchr(data_ + strtab_->sh_offset + at, '\0', strtab_->sh_size - at))
        return corrupt + "entry " + std::to_string(i) + " (" + tag_name(d->d_tag) + ") names no string of DT_STRTAB";
    }
    return {};
  }

  const unsigned char* data_;
  std::size_t size_;
  Elf64_Ehdr eh_{};
  std::vector<Elf64_Phdr> phdrs_;
  std::vector<Elf64_Shdr> shdrs_;
  const Elf64_Phdr* dynamic_ = nullptr;
  const Elf64_Shdr* strtab_ = nullptr;
  const Elf64_Shdr* rela_ = nullptr;
};

}  // namespace

std::string elf_problem(const unsigned char* data, std::size_t size) { return Checker(data, size).run(); }

std::string elf_problem(const std::filesystem::path& path) {
  // Mapped, not copied: a plugin with debug information is several MB and the section
  // header table sits at its end. The mapping covers exactly the file's size at
  // fstat and the checker never reads past it (a file truncated while it is being
  // checked is the one hazard left, as it is for dlopen itself).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "cannot be read";
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return "cannot be read";
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    return elf_problem(nullptr, 0);
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return "cannot be read";
  std::string why = elf_problem(static_cast<const unsigned char*>(map), size);
  ::munmap(map, size);
  return why;
}

}  // namespace vguide
