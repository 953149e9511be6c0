// The small-block pool (see detail/frame_pool.hpp).

#include <simul/loop/detail/frame_pool.hpp>

#include <pthread.h>
#include <sys/mman.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#define SIMUL_POOL_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SIMUL_POOL_OFF 1
#endif
#endif

namespace simul::detail {

#if defined(SIMUL_POOL_OFF)

void* pool_allocate(std::size_t size) { return ::operator new(size); }
void pool_deallocate(void* block, std::size_t /*size*/) noexcept { ::operator delete(block); }

#else

namespace {

constexpr std::size_t k_granule = 16;
constexpr std::size_t k_max_block = 1024;
constexpr std::size_t k_classes = k_max_block / k_granule;
constexpr std::size_t k_first_slab = std::size_t{64} << 10;
constexpr std::size_t k_max_slab = std::size_t{4} << 20;
constexpr std::size_t k_huge = std::size_t{2} << 20; // a transparent huge page

struct free_block {
  free_block* next;
};

// Trivially destructible, so it stays usable while other thread_local
// destructors run at thread exit (frames may be freed then).
struct thread_lists {
  free_block* heads[k_classes];
  char* bump;
  char* bump_end;
  std::size_t next_slab;
  bool registered;
  bool exited;
};
thread_local thread_lists t_lists{};

// Blocks of threads that exited, and blocks freed during a thread's exit.
std::mutex g_spare_mutex;
free_block* g_spare[k_classes]{};
// Whether g_spare[c] may hold blocks, read without the lock: a thread whose
// list is empty checks it before locking, so a fresh burst of allocations
// (every one of them on the slow path) takes no lock. A stale false only
// means a fresh block is carved instead of a spare one taken.
std::atomic<bool> g_spare_maybe[k_classes]{};

void give_to_spare(std::size_t cls, free_block* head) noexcept {
  if (head == nullptr) {
    return;
  }
  auto* tail = head;
  while (tail->next != nullptr) {
    tail = tail->next;
  }
  std::lock_guard lock(g_spare_mutex);
  tail->next = g_spare[cls];
  g_spare[cls] = head;
  g_spare_maybe[cls].store(true, std::memory_order_relaxed);
}

// fork() while another thread holds the spare list's lock would leave the
// child with a lock nobody unlocks: hold it across fork, as malloc does.
// The handlers are installed while the library loads, before any thread of
// the program can be inside the installation: a lazy, once-guarded install
// that another thread is in the middle of when fork() runs leaves the child
// waiting forever on the guard.
const bool g_fork_handlers_installed = [] {
  ::pthread_atfork([] { g_spare_mutex.lock(); }, [] { g_spare_mutex.unlock(); }, [] { g_spare_mutex.unlock(); });
  return true;
}();

struct exit_guard {
  exit_guard() = default;
  exit_guard(const exit_guard&) = delete;
  exit_guard& operator=(const exit_guard&) = delete;
  ~exit_guard() {
    t_lists.exited = true;
    for (std::size_t c = 0; c < k_classes; ++c) {
      give_to_spare(c, t_lists.heads[c]);
      t_lists.heads[c] = nullptr;
    }
  }
};

// Slabs from 2 MiB up are 2 MiB-aligned and asked to be transparent huge
// pages: a burst of a million tasks then faults in a few hundred pages, not
// tens of thousands, and walks them with few TLB misses. Smaller slabs (a
// program with few tasks) and kernels without THP get ordinary pages.
char* map_slab(std::size_t slab) {
  if (slab < k_huge) {
    void* p = ::mmap(nullptr, slab, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) {
      throw std::bad_alloc();
    }
    return static_cast<char*>(p);
  }
  void* raw = ::mmap(nullptr, slab + k_huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) {
    throw std::bad_alloc();
  }
  const auto start = reinterpret_cast<std::uintptr_t>(raw);
  const auto aligned = (start + k_huge - 1) & ~(std::uintptr_t{k_huge} - 1);
  if (aligned > start) {
    ::munmap(raw, aligned - start);
  }
  if (const auto tail = start + slab + k_huge - (aligned + slab); tail > 0) {
    ::munmap(reinterpret_cast<void*>(aligned + slab), tail);
  }
  auto* p = reinterpret_cast<char*>(aligned);
#if defined(MADV_HUGEPAGE)
  (void)::madvise(p, slab, MADV_HUGEPAGE);
#endif
#if defined(MADV_POPULATE_WRITE)
  (void)::madvise(p, slab, MADV_POPULATE_WRITE); // as MAP_POPULATE; faults lazily where unsupported
#endif
  return p;
}

constexpr std::size_t class_of(std::size_t size) noexcept { return (size + k_granule - 1) / k_granule - 1; }

// Out of line, so the fast path of pool_allocate stays a few instructions.
[[gnu::noinline]] void* allocate_slow(std::size_t cls) {
  auto& l = t_lists;
  if (!l.registered) {
    l.registered = true;
    static thread_local exit_guard guard; // flushes the lists at thread exit
    (void)guard;
  }
  if (g_spare_maybe[cls].load(std::memory_order_relaxed)) {
    std::lock_guard lock(g_spare_mutex);
    g_spare_maybe[cls].store(false, std::memory_order_relaxed);
    if (auto* b = g_spare[cls]; b != nullptr) {
      g_spare[cls] = nullptr;
      l.heads[cls] = b->next;
      return b;
    }
  }
  const std::size_t bytes = (cls + 1) * k_granule;
  if (static_cast<std::size_t>(l.bump_end - l.bump) < bytes) {
    // The tail of the old slab (under 1 KiB) is dropped.
    const std::size_t slab = l.next_slab == 0 ? k_first_slab : l.next_slab;
    char* p = map_slab(slab);
    l.bump = p;
    l.bump_end = l.bump + slab;
    l.next_slab = slab < k_max_slab ? slab * 2 : k_max_slab;
  }
  void* out = l.bump;
  l.bump += bytes;
  return out;
}

} // namespace

void* pool_allocate(std::size_t size) {
  if (size > k_max_block || size == 0) {
    return ::operator new(size);
  }
  const auto cls = class_of(size);
  auto& l = t_lists;
  if (auto* b = l.heads[cls]; b != nullptr) {
    l.heads[cls] = b->next;
    return b;
  }
  return allocate_slow(cls);
}

void pool_deallocate(void* block, std::size_t size) noexcept {
  if (block == nullptr) {
    return;
  }
  if (size > k_max_block || size == 0) {
    ::operator delete(block);
    return;
  }
  const auto cls = class_of(size);
  auto* b = static_cast<free_block*>(block);
  auto& l = t_lists;
  if (l.exited) {
    b->next = nullptr;
    give_to_spare(cls, b);
    return;
  }
  b->next = l.heads[cls];
  l.heads[cls] = b;
}

#endif

} // namespace simul::detail
