#pragma once

// A shared, counted reference to a loop object whose type stays hidden in the
// library's sources (a stream's, server's, UDP endpoint's or process's
// state): the one handle behind `stream_reader`/`stream_writer`, `server`,
// `datagram_endpoint` and `process`. Internal.
//
// The public header may leave `State` incomplete: copying and destroying a
// reference call `counted_ref<State>::acquire` / `release`, which are
// defined once for every `State` in loop/src/io/counted_ref_impl.hpp (they
// call the state's own `acquire()` / `release()`) and instantiated beside
// the state's definition (`template class counted_ref<stream_state>;`).
// The count is not atomic.
//
// Thread-safety: loop thread only. Lifetime: the state lives while any
// reference does (and as long as the state itself decides: a closing socket
// waits for its handle's close callback).

#include <utility>

namespace simul::detail {

/// A counted reference to a `State`; null when default-constructed or moved from.
template <class State>
class counted_ref {
 public:
  counted_ref() noexcept = default;
  /// Shares `s` (null: an empty reference).
  explicit counted_ref(State* s) noexcept : m_state(s) {
    if (s != nullptr) {
      acquire(s);
    }
  }
  counted_ref(const counted_ref& o) noexcept : counted_ref(o.m_state) {}
  counted_ref(counted_ref&& o) noexcept : m_state(std::exchange(o.m_state, nullptr)) {}
  counted_ref& operator=(counted_ref o) noexcept {
    std::swap(m_state, o.m_state);
    return *this;
  }
  ~counted_ref() { reset(); }

  /// Drops this reference; the reference is empty afterwards.
  void reset() noexcept {
    if (auto* s = std::exchange(m_state, nullptr); s != nullptr) {
      release(s);
    }
  }

  [[nodiscard]] State* get() const noexcept { return m_state; }
  explicit operator bool() const noexcept { return m_state != nullptr; }

 private:
  // The hooks: defined in the library's sources, for every State at once.
  static void acquire(State* s) noexcept;
  static void release(State* s) noexcept;

  State* m_state = nullptr;
};

} // namespace simul::detail
