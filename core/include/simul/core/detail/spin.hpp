#pragma once

// cpu_relax: the pause a spinning thread takes between two looks at a shared
// word, so a hyper-threaded sibling gets the core and the spin costs less
// power. Used by every spin in simul (futures, the thread pool's workers and
// its spin lock).

namespace simul::detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

} // namespace simul::detail
