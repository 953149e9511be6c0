// The recorder: each thread's ring, the hooks' out-of-line halves, start and
// stop, and SIMUL_TRACE.
//
// Slot layouts (w[0] holds the kind in its low byte, `high` above it):
//   run       w1 key, w2 serial, w3 t0, w4 t1, w5 label
//   wait      w1 key, w3 t, w5 label
//   create    high line, w1 key, w2 serial, w3 t, w5 file   (then a name slot)
//   name      w1 key, w2..w6 the name (40 bytes)
//   rename    high line, w1 key, w3 t, w5 file              (then a name slot)
//   end       w1 key, w2 serial, w3 t                       (then a name slot)
//   remote    high pid, w1 lane (0: the pid's own), w3 t0, w4 t1, w5 label
//   span_*    w1 t0, w2 t1, w3..w6 the name (32 bytes)

#include "ring.hpp"

#include <simul/trace.hpp>
#include <simul/trace/detail/recorder.hpp>

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace simul::detail {

std::atomic<bool> g_trace_on{false};

std::int64_t trace_now() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

trace_registry& registry() noexcept {
  static trace_registry* r = new trace_registry(); // never destroyed: threads may record during exit
  return *r;
}

namespace {

// Marks the thread's ring dead when the thread exits, so that the next start
// frees it; after that the thread records nothing more.
struct ring_owner {
  trace_ring* ring = nullptr;
  ~ring_owner();
};
thread_local trace_ring* t_ring = nullptr;
thread_local bool t_exiting = false;
thread_local ring_owner t_owner;

ring_owner::~ring_owner() {
  t_exiting = true;
  t_ring = nullptr;
  if (ring != nullptr) {
    ring->alive.store(false, std::memory_order_release);
  }
}

std::string this_thread_name() {
  char name[32] = {};
  if (::pthread_getname_np(::pthread_self(), name, sizeof name) != 0) {
    return "thread";
  }
  return name;
}

[[gnu::noinline]] trace_ring* make_ring() noexcept {
  if (t_exiting) {
    return nullptr;
  }
  try {
    auto& reg = registry();
    const std::lock_guard lock(reg.mutex);
    reg.rings.push_back(std::make_unique<trace_ring>(reg.capacity, static_cast<int>(::getpid()),
                                                     static_cast<int>(::syscall(SYS_gettid)), this_thread_name()));
    t_ring = reg.rings.back().get();
    t_owner.ring = t_ring;
    return t_ring;
  } catch (...) {
    return nullptr; // out of memory: this event is not recorded
  }
}

/// The next slot of this thread's ring, marked as being written; null if
/// the thread cannot record. `publish` finishes it. The words are stored
/// with release (plain stores on x86): a reader whose acquire load sees a
/// new word then sees the odd sequence number stored before it.
trace_slot* claim(std::uint64_t& index) noexcept {
  auto* ring = t_ring != nullptr ? t_ring : make_ring();
  if (ring == nullptr) {
    return nullptr;
  }
  index = ring->head.load(std::memory_order_relaxed);
  auto& slot = ring->slots[index % ring->capacity];
  slot.seq.store(2 * index + 1, std::memory_order_relaxed);
  return &slot;
}

void publish(trace_slot& slot, std::uint64_t index) noexcept {
  slot.seq.store(2 * (index + 1), std::memory_order_release);
  t_ring->head.store(index + 1, std::memory_order_release);
}

std::uint64_t word(const void* p) noexcept { return reinterpret_cast<std::uintptr_t>(p); }
std::uint64_t word(std::int64_t v) noexcept { return static_cast<std::uint64_t>(v); }

void put(trace_slot& s, trace_kind kind, std::uint64_t high, std::uint64_t w1, std::uint64_t w2, std::uint64_t w3,
         std::uint64_t w4, std::uint64_t w5) noexcept {
  s.w[0].store(static_cast<std::uint64_t>(kind) | (high << 8), std::memory_order_release);
  s.w[1].store(w1, std::memory_order_release);
  s.w[2].store(w2, std::memory_order_release);
  s.w[3].store(w3, std::memory_order_release);
  s.w[4].store(w4, std::memory_order_release);
  s.w[5].store(w5, std::memory_order_release);
}

void record(trace_kind kind, std::uint64_t high, std::uint64_t w1, std::uint64_t w2, std::uint64_t w3, std::uint64_t w4,
            std::uint64_t w5) noexcept {
  std::uint64_t index = 0;
  if (auto* s = claim(index)) {
    put(*s, kind, high, w1, w2, w3, w4, w5);
    publish(*s, index);
  }
}

void record_name(const void* key, std::string_view name) noexcept {
  std::uint64_t index = 0;
  if (auto* s = claim(index)) {
    s->w[0].store(static_cast<std::uint64_t>(trace_kind::name), std::memory_order_release);
    s->w[1].store(word(key), std::memory_order_release);
    pack_text(&s->w[2], 5, name);
    publish(*s, index);
  }
}

} // namespace

void pack_text(std::atomic<std::uint64_t>* words, std::size_t count, std::string_view text) noexcept {
  for (std::size_t i = 0; i < count; ++i) {
    std::uint64_t w = 0;
    const auto from = i * 8;
    if (from < text.size()) {
      std::memcpy(&w, text.data() + from, std::min<std::size_t>(8, text.size() - from));
    }
    words[i].store(w, std::memory_order_release);
  }
}

std::string unpack_text(const std::uint64_t* words, std::size_t count) {
  std::string out(count * 8, '\0');
  std::memcpy(out.data(), words, count * 8);
  out.resize(std::strlen(out.c_str()));
  return out;
}

void trace_run(const void* key, std::uint64_t serial, const char* label, std::int64_t t0, std::int64_t t1) noexcept {
  record(trace_kind::run, 0, word(key), serial, word(t0), word(t1), word(label));
}

void trace_wait(const void* key, const char* label) noexcept {
  record(trace_kind::wait, 0, word(key), 0, word(trace_now()), 0, word(label));
}

void trace_create(const void* key, std::uint64_t serial, std::string_view name, const char* file,
                  std::uint32_t line) noexcept {
  record(trace_kind::create, line, word(key), serial, word(trace_now()), 0, word(file));
  if (!name.empty()) {
    record_name(key, name);
  }
}

void trace_rename(const void* key, std::string_view name, const char* file, std::uint32_t line) noexcept {
  record(trace_kind::rename, line, word(key), 0, word(trace_now()), 0, word(file));
  record_name(key, name);
}

void trace_end(const void* key, std::uint64_t serial, std::string_view name) noexcept {
  record(trace_kind::end, 0, word(key), serial, word(trace_now()), 0, 0);
  if (!name.empty()) {
    record_name(key, name);
  }
}

void trace_remote_run(int pid, const char* label, std::int64_t t0, std::int64_t t1) noexcept {
  record(trace_kind::remote, static_cast<std::uint32_t>(pid), 0, 0, word(t0), word(t1), word(label));
}

std::uint32_t trace_remote_lane(int pid, std::string_view name) noexcept {
  try {
    auto& reg = registry();
    const std::lock_guard lock(reg.mutex);
    reg.remote_lanes.push_back({pid, std::string(name)});
    return static_cast<std::uint32_t>(reg.remote_lanes.size());
  } catch (...) {
    return 0; // out of memory: this lane's slices are not recorded
  }
}

void trace_lane_run(std::uint32_t lane, const char* label, std::int64_t t0, std::int64_t t1) noexcept {
  record(trace_kind::remote, 0, lane, 0, word(t0), word(t1), word(label));
}

namespace {
void record_span(bool waiting, std::string_view name, std::int64_t t0, std::int64_t t1) noexcept {
  std::uint64_t index = 0;
  if (auto* s = claim(index)) {
    const auto kind = waiting ? trace_kind::span_wait : trace_kind::span_run;
    s->w[0].store(static_cast<std::uint64_t>(kind), std::memory_order_release);
    s->w[1].store(word(t0), std::memory_order_release);
    s->w[2].store(word(t1), std::memory_order_release);
    pack_text(&s->w[3], 4, name);
    publish(*s, index);
  }
}

// Forgets every event recorded so far and frees the rings of exited threads.
// A capacity of 0 keeps the current one.
void clear_rings(std::size_t capacity) {
  auto& reg = registry();
  const std::lock_guard lock(reg.mutex);
  if (capacity != 0) {
    reg.capacity = capacity;
  }
  std::erase_if(reg.rings, [](const auto& ring) { return !ring->alive.load(std::memory_order_acquire); });
  for (auto& ring : reg.rings) {
    ring->base.store(ring->head.load(std::memory_order_acquire), std::memory_order_release);
  }
}
} // namespace

} // namespace simul::detail

namespace simul::trace {

void start(trace_options options) {
  if (options.events_per_thread < 16) {
    throw error("simul::trace::start: events_per_thread must be at least 16 (it is " +
                std::to_string(options.events_per_thread) + ")");
  }
  detail::clear_rings(options.events_per_thread);
  detail::g_trace_on.store(true, std::memory_order_relaxed);
}

void stop() noexcept { detail::g_trace_on.store(false, std::memory_order_relaxed); }

bool enabled() noexcept { return detail::trace_on(); }

void clear() noexcept {
  try {
    detail::clear_rings(0);
  } catch (...) {
  }
}

span::span(std::string name, bool waiting) : m_waiting(waiting) {
  if (detail::trace_on()) [[unlikely]] {
    m_name = std::move(name);
    m_t0 = detail::trace_now();
    m_on = true;
  }
}

span::~span() {
  if (m_on) [[unlikely]] {
    detail::record_span(m_waiting, m_name, m_t0, detail::trace_now());
  }
}

} // namespace simul::trace

// SIMUL_TRACE=FILE: trace the whole program and write FILE at exit.
namespace simul::detail {
namespace {

pid_t g_env_pid = 0; // a forked child inherits the atexit hook but does not write

std::string& env_trace_path() {
  static auto* path = new std::string();
  return *path;
}

bool ends_with(const std::string& s, std::string_view tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

void write_env_trace() noexcept {
  const auto& path = env_trace_path();
  if (::getpid() != g_env_pid) {
    return;
  }
  try {
    trace::stop();
    if (ends_with(path, ".svg")) {
      trace::write_svg(path);
    } else {
      trace::write_json(path);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "simul: SIMUL_TRACE=%s: %s\n", path.c_str(), e.what());
  }
}

bool start_from_environment() noexcept {
  const char* value = std::getenv("SIMUL_TRACE");
  if (value == nullptr || *value == '\0') {
    return false;
  }
  try {
    env_trace_path() = value;
    if (!ends_with(env_trace_path(), ".json") && !ends_with(env_trace_path(), ".svg")) {
      std::fprintf(stderr, "simul: SIMUL_TRACE=%s: the file name must end in .json or .svg; not tracing\n", value);
      return false;
    }
    trace::start();
    g_env_pid = ::getpid();
    std::atexit(&write_env_trace);
    return true;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "simul: SIMUL_TRACE=%s: %s; not tracing\n", value, e.what());
    return false;
  }
}

[[maybe_unused]] const bool g_started_from_environment = start_from_environment();

} // namespace

void trace_leave_to_rank_0() noexcept {
  trace::stop();
  g_env_pid = 0; // write_env_trace writes nothing in this process
}
} // namespace simul::detail
