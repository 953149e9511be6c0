// Function offsets from the executable's load address, and its build id.
// See simul/procpool/detail/code_address.hpp.

#include <simul/procpool/detail/code_address.hpp>

#include <elf.h>
#include <link.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <vector>

namespace simul::detail {
namespace {

struct layout {
  executable_image image;
  std::string build_id; ///< hex of the NT_GNU_BUILD_ID note, empty if none
};

std::string to_hex(const unsigned char* bytes, std::size_t size) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string text;
  text.reserve(2 * size);
  for (std::size_t i = 0; i < size; ++i) {
    text.push_back(digits[bytes[i] >> 4]);
    text.push_back(digits[bytes[i] & 0xf]);
  }
  return text;
}

// The notes of one PT_NOTE segment: the GNU build id's bytes, or "".
std::string find_build_id(const char* notes, std::size_t size) {
  std::size_t pos = 0;
  const auto align4 = [](std::size_t n) { return (n + 3) & ~std::size_t{3}; };
  while (pos + sizeof(ElfW(Nhdr)) <= size) {
    ElfW(Nhdr) header;
    std::memcpy(&header, notes + pos, sizeof header);
    pos += sizeof header;
    const std::size_t name_at = pos;
    const std::size_t desc_at = name_at + align4(header.n_namesz);
    const std::size_t next = desc_at + align4(header.n_descsz);
    if (next > size || next < pos) {
      break;
    }
    if (header.n_type == NT_GNU_BUILD_ID && header.n_namesz == 4 && std::memcmp(notes + name_at, "GNU", 4) == 0 &&
        header.n_descsz > 0) {
      return to_hex(reinterpret_cast<const unsigned char*>(notes + desc_at), header.n_descsz);
    }
    pos = next;
  }
  return {};
}

int visit_first(dl_phdr_info* info, std::size_t, void* data) {
  // The first object dl_iterate_phdr reports is the main program.
  auto* out = static_cast<layout*>(data);
  out->image.base = info->dlpi_addr;
  std::uintptr_t lo = std::numeric_limits<std::uintptr_t>::max();
  std::uintptr_t hi = 0;
  for (ElfW(Half) i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_LOAD && (ph.p_flags & PF_X) != 0) {
      const std::uintptr_t begin = info->dlpi_addr + ph.p_vaddr;
      lo = std::min(lo, begin);
      hi = std::max(hi, begin + ph.p_memsz);
    } else if (ph.p_type == PT_NOTE && out->build_id.empty()) {
      out->build_id = find_build_id(reinterpret_cast<const char*>(info->dlpi_addr + ph.p_vaddr),
                                    static_cast<std::size_t>(ph.p_memsz));
    }
  }
  if (hi > lo) {
    out->image.code_begin = lo;
    out->image.code_end = hi;
  }
  return 1; // stop after the main program
}

const layout& read_layout() noexcept {
  static const layout value = [] {
    layout result;
    dl_iterate_phdr(&visit_first, &result);
    return result;
  }();
  return value;
}

// FNV-1a, 64 bits: a stable name for the file's bytes, not a security hash.
std::string hash_of_exe() {
  std::ifstream file("/proc/self/exe", std::ios::binary);
  if (!file) {
    throw error("simul: cannot read /proc/self/exe to identify the executable's build");
  }
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  std::vector<char> buffer(std::size_t{1} << 16);
  while (file) {
    file.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const auto got = static_cast<std::size_t>(file.gcount());
    for (std::size_t i = 0; i < got; ++i) {
      hash ^= static_cast<unsigned char>(buffer[i]);
      hash *= 0x100000001b3ULL;
    }
  }
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(hash));
  return std::string("fnv1a64:") + text;
}

} // namespace

const executable_image& this_executable() noexcept { return read_layout().image; }

const std::string& executable_build_id() {
  static const std::string id = [] {
    const auto& note = read_layout().build_id;
    return note.empty() ? hash_of_exe() : "build-id:" + note;
  }();
  return id;
}

std::uint64_t code_offset_of(std::uintptr_t address) {
  const auto& image = this_executable();
  if (address < image.code_begin || address >= image.code_end) {
    char text[32];
    std::snprintf(text, sizeof text, "%#llx", static_cast<unsigned long long>(address));
    throw code_address_error(std::string("simul: the function at ") + text +
                             " is not in the executable's code (a shared library's function cannot be named in "
                             "another process; link it into the program)");
  }
  return static_cast<std::uint64_t>(address - image.base);
}

std::uintptr_t code_at_offset(std::uint64_t offset) {
  const auto& image = this_executable();
  const std::uintptr_t address = image.base + static_cast<std::uintptr_t>(offset);
  if (address < image.code_begin || address >= image.code_end || address < image.base) {
    throw code_address_error("simul: code offset " + std::to_string(offset) +
                             " is outside this executable's code (another build, or a corrupt message)");
  }
  return address;
}

} // namespace simul::detail
