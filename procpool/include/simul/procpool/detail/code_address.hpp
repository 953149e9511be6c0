#pragma once

// Function identity across processes that run the same executable (internal).
//
// Two processes started from one executable (an exec'd zygote, the ranks of
// an MPI job, possibly on other machines) map it at different addresses
// (ASLR), so a function pointer means nothing to the other side. What does
// travel is a function's offset from the executable's load address, valid in
// any process whose executable is byte-for-byte the same build; the build is
// named by `executable_build_id()`, which the two sides compare once before
// they exchange offsets.
//
// Only code inside the executable itself has an offset: a function in a
// shared library (or a JIT buffer) is refused with `code_address_error`
// rather than sent as a number the other side would misread. Templates
// instantiated by the program (every task trampoline) are in the executable
// when simul is linked statically, as it is by default.
//
// Thread-safety: every function may be called from any thread; the
// executable's layout and build id are read once, on first use, under a
// function-local static. Lifetime: the returned references live until exit.
// Needs nothing but the C library (dl_iterate_phdr); no MPI, no sockets.

#include <simul/core/error.hpp>

#include <cstdint>
#include <string>

namespace simul {

/// A function cannot be named across processes: it is not in the
/// executable, or an offset does not point into the executable's code.
class code_address_error : public error {
 public:
  using error::error;
};

namespace detail {

/// The loaded executable, as this process sees it.
struct executable_image {
  std::uintptr_t base = 0;       ///< load address (0 for a non-PIE executable)
  std::uintptr_t code_begin = 0; ///< lowest address of its executable segments
  std::uintptr_t code_end = 0;   ///< one past the highest
};

/// The executable's layout (read on first call).
const executable_image& this_executable() noexcept;

/// The executable's build: "build-id:<hex>" from its NT_GNU_BUILD_ID note, or
/// "fnv1a64:<hex>" of /proc/self/exe's bytes when it has no note. Equal
/// strings mean the same build. Throws `simul::error` only if there is no
/// note and the file cannot be read.
const std::string& executable_build_id();

/// The offset of `address` from the executable's load address; throws
/// `code_address_error` if it is not in the executable's code.
std::uint64_t code_offset_of(std::uintptr_t address);

/// The address `offset` names in this process; throws `code_address_error`
/// if it falls outside the executable's code (a foreign or corrupt offset).
std::uintptr_t code_at_offset(std::uint64_t offset);

/// `code_offset_of` for a function pointer.
template <class FnPtr>
std::uint64_t code_offset(FnPtr fn) {
  return code_offset_of(reinterpret_cast<std::uintptr_t>(fn));
}

/// The function pointer of type `FnPtr` at `offset` (see `code_at_offset`).
template <class FnPtr>
FnPtr code_from_offset(std::uint64_t offset) {
  return reinterpret_cast<FnPtr>(code_at_offset(offset));
}

} // namespace detail
} // namespace simul
