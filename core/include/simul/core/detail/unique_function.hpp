#pragma once

// A move-only type-erased callable with a small inline buffer.
//
// std::function must be copyable, so it cannot hold a lambda that owns a
// promise or a unique_ptr, and std::move_only_function is C++23. Callables that
// fit in `Capacity` bytes (and move without throwing) live inline, so handing a
// small task to a pool allocates nothing; larger ones go to the heap.

#include <cstddef>
#include <functional>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace simul::detail {

template <class Signature, std::size_t Capacity = 48>
class unique_function;

template <class R, class... Args, std::size_t Capacity>
class unique_function<R(Args...), Capacity> {
 public:
  unique_function() noexcept = default;
  unique_function(std::nullptr_t) noexcept {}

  template <class F>
  requires(!std::is_same_v<std::remove_cvref_t<F>, unique_function> &&
           std::is_invocable_r_v<R, std::decay_t<F>&, Args...>)
      unique_function(F&& f) { // NOLINT(google-explicit-constructor): a callable converts like std::function
    using D = std::decay_t<F>;
    if constexpr (fits_inline<D>) {
      ::new (static_cast<void*>(m_buffer)) D(std::forward<F>(f));
      m_ops = &inline_ops<D>;
    } else {
      *reinterpret_cast<D**>(m_buffer) = new D(std::forward<F>(f));
      m_ops = &heap_ops<D>;
    }
  }

  unique_function(unique_function&& other) noexcept : m_ops(other.m_ops) {
    if (m_ops != nullptr) {
      m_ops->move(other.m_buffer, m_buffer);
      other.m_ops = nullptr;
    }
  }

  unique_function& operator=(unique_function&& other) noexcept {
    if (this != &other) {
      reset();
      if (other.m_ops != nullptr) {
        other.m_ops->move(other.m_buffer, m_buffer);
        m_ops = other.m_ops;
        other.m_ops = nullptr;
      }
    }
    return *this;
  }

  unique_function(const unique_function&) = delete;
  unique_function& operator=(const unique_function&) = delete;

  ~unique_function() { reset(); }

  explicit operator bool() const noexcept { return m_ops != nullptr; }

  R operator()(Args... args) { return m_ops->call(m_buffer, std::forward<Args>(args)...); }

  void reset() noexcept {
    if (m_ops != nullptr) {
      m_ops->destroy(m_buffer);
      m_ops = nullptr;
    }
  }

  /// True when a callable of type F would be stored without a heap allocation.
  template <class F>
  static constexpr bool
      fits_inline = sizeof(F) <= Capacity &&
                    alignof(F) <= alignof(std::max_align_t) && std::is_nothrow_move_constructible_v<F>;

 private:
  struct ops {
    R (*call)(void*, Args&&...);
    void (*move)(void* from, void* to) noexcept;
    void (*destroy)(void*) noexcept;
  };

  template <class D>
  static constexpr ops inline_ops{
      [](void* p, Args&&... args) -> R { return std::invoke(*static_cast<D*>(p), std::forward<Args>(args)...); },
      [](void* from, void* to) noexcept {
        ::new (to) D(std::move(*static_cast<D*>(from)));
        static_cast<D*>(from)->~D();
      },
      [](void* p) noexcept { static_cast<D*>(p)->~D(); },
  };

  template <class D>
  static constexpr ops heap_ops{
      [](void* p, Args&&... args) -> R { return std::invoke(**static_cast<D**>(p), std::forward<Args>(args)...); },
      [](void* from, void* to) noexcept { *static_cast<D**>(to) = *static_cast<D**>(from); },
      [](void* p) noexcept { delete *static_cast<D**>(p); },
  };

  alignas(std::max_align_t) unsigned char m_buffer[Capacity];
  const ops* m_ops = nullptr;
};

} // namespace simul::detail
