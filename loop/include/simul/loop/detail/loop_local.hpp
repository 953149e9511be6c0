#pragma once

// Per-loop objects: one object of each type per loop, made on first use and
// destroyed by the loop's `close()`.
//
// For libraries built on the loop that need one shared thing per loop (the
// http module's default client, say): `detail::loop_local<T>(loop, make)`
// returns the loop's T, calling `make()` to build it the first time. The
// loop destroys its objects in `close()`, newest first, after its pending
// tasks were cancelled and unwound and before it closes its handles, so an
// object's destructor may still use the loop (remove a reader, cancel a
// timer); it must not start new work there.
//
// Thread-safety: the loop's thread only (or any thread while the loop is not
// running). Lifetime: a reference returned stays valid until the loop closes.

#include <simul/core/error.hpp>

#include <memory>
#include <type_traits>
#include <typeinfo>
#include <utility>

namespace simul {
class event_loop;
} // namespace simul

namespace simul::detail {

/// What a loop keeps for `loop_local`. Internal.
class loop_local_base {
 public:
  loop_local_base() = default;
  loop_local_base(const loop_local_base&) = delete;
  loop_local_base& operator=(const loop_local_base&) = delete;
  virtual ~loop_local_base() = default;
};

/// The loop's object stored under `key`, or null.
loop_local_base* loop_local_find(event_loop& loop, const std::type_info& key) noexcept;
/// Stores `value` under `key` (which must be free). Throws `simul::error` if
/// the loop is closed or closing (and destroys `value`).
loop_local_base& loop_local_store(event_loop& loop, const std::type_info& key, std::unique_ptr<loop_local_base> value);

template <class T>
class loop_local_holder final : public loop_local_base {
 public:
  template <class Make>
  explicit loop_local_holder(Make& make) : value(make()) {}
  T value;
};

/// The loop's T, made by `make()` (which returns a T) on first use.
/// Throws what `make` throws, and `simul::error` once the loop is closing.
template <class T, class Make>
T& loop_local(event_loop& loop, Make&& make) {
  if (auto* found = loop_local_find(loop, typeid(T)); found != nullptr) {
    return static_cast<loop_local_holder<T>*>(found)->value;
  }
  auto& stored = loop_local_store(loop, typeid(T), std::make_unique<loop_local_holder<T>>(make));
  return static_cast<loop_local_holder<T>&>(stored).value;
}

} // namespace simul::detail
