#pragma once

// detail::source_location: std::source_location where the standard library
// has it, else (clang 14 with libstdc++ 12, which lacks the builtin behind
// <source_location>) a three-word stand-in with the same members, filled by
// the __builtin_FILE / __builtin_LINE / __builtin_FUNCTION intrinsics both
// compilers have. The loop records one per task and per scheduled callback
// (a default argument: callers never spell it) and names it in its reports.
//
// Thread-safety: a plain value. Lifetime: points to static strings.

#include <version>

#if defined(__cpp_lib_source_location)
#include <source_location>
#endif

#include <cstdint>

namespace simul::detail {

#if defined(__cpp_lib_source_location)
using source_location = std::source_location;
#else
class source_location {
 public:
  static constexpr source_location current(const char* file = __builtin_FILE(),
                                           std::uint_least32_t line = __builtin_LINE(),
                                           const char* function = __builtin_FUNCTION()) noexcept {
    source_location out;
    out.m_file = file;
    out.m_line = line;
    out.m_function = function;
    return out;
  }
  constexpr source_location() noexcept = default;
  constexpr const char* file_name() const noexcept { return m_file; }
  constexpr const char* function_name() const noexcept { return m_function; }
  constexpr std::uint_least32_t line() const noexcept { return m_line; }
  constexpr std::uint_least32_t column() const noexcept { return 0; }

 private:
  const char* m_file = "";
  const char* m_function = "";
  std::uint_least32_t m_line = 0;
};
#endif

} // namespace simul::detail
