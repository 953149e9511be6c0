#pragma once

// A byte buffer in shared memory that crosses to a worker without a copy.
//
// A `std::vector` or `std::string` argument is copied into shared memory when
// it is sent and out of it when it arrives: two copies each way, which for big
// buffers cost more than the trip. A `shared_buffer` lives in shared memory
// from the start (a memfd mapped into this process), so sending it passes only
// the descriptor: the worker maps the same pages, and a buffer that comes back
// is the very memory that was sent. It is Python's
// `multiprocessing.shared_memory.SharedMemory` for `process_pool`, without the
// name to unlink: the memory goes away with the last handle in any process.
//
// Sharing, not copying, is the point, and it is also the rule to remember:
// every copy of a `shared_buffer` — in this process, or in a worker it was
// sent to — sees and changes the same bytes. A worker that writes into a
// buffer the caller still holds changes the caller's bytes; if the worker dies
// half-way, the bytes are half-written. Nothing synchronises access: as with
// memory shared between threads, hand the buffer over and do not touch it
// until the answer comes back (the future's completion orders the worker's
// writes before the caller's reads).
//
// A `shared_buffer` travels as a task argument or result of its own, and also
// inside anything that travels through cereal: a member of a struct whose
// `serialize` names it, an element of a vector, tuple, map or optional. Each
// one costs a descriptor, and a task or a result carries at most 64 (a
// `serialization_error` says so). Only a `process_pool` can send one: saving
// it to any other cereal archive throws `serialization_error`, since the bytes
// would not be in the archive. It is tied to one machine, so a transport to
// another machine would send its bytes.
//
// Thread-safety: like `std::shared_ptr` — distinct handles may be used on
// different threads at once, even when they share the bytes; the bytes
// themselves are not synchronised.
// Lifetime: the mapping and the memfd live while any handle in any process
// refers to them. A buffer that exists when a pool is created is inherited
// by its workers, as fork inherits all memory.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <type_traits>

namespace simul {

namespace detail {
struct shared_block;
} // namespace detail

/// Bytes in shared memory; copies share them (see the file comment).
class shared_buffer {
 public:
  /// An empty buffer (no memory).
  shared_buffer() noexcept = default;
  /// `size` zero bytes in a new memfd. Throws `std::system_error` if the memfd
  /// cannot be made, sized or mapped (for instance, not enough memory).
  explicit shared_buffer(std::size_t size);
  /// A new buffer holding a copy of `bytes`.
  explicit shared_buffer(std::span<const std::byte> bytes);

  [[nodiscard]] std::byte* data() noexcept { return m_data; }
  [[nodiscard]] const std::byte* data() const noexcept { return m_data; }
  [[nodiscard]] std::size_t size() const noexcept { return m_size; }
  [[nodiscard]] bool empty() const noexcept { return m_size == 0; }

  [[nodiscard]] std::span<std::byte> bytes() noexcept { return {m_data, m_size}; }
  [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return {m_data, m_size}; }
  [[nodiscard]] std::byte* begin() noexcept { return m_data; }
  [[nodiscard]] std::byte* end() noexcept { return m_data + m_size; }
  [[nodiscard]] const std::byte* begin() const noexcept { return m_data; }
  [[nodiscard]] const std::byte* end() const noexcept { return m_data + m_size; }
  std::byte& operator[](std::size_t i) noexcept { return m_data[i]; }
  const std::byte& operator[](std::size_t i) const noexcept { return m_data[i]; }

  /// The bytes as `T`s (trivially copyable; whole elements only, any tail
  /// shorter than `sizeof(T)` is left out). The mapping is page-aligned.
  template <class T>
  [[nodiscard]] std::span<T> as() noexcept {
    static_assert(std::is_trivially_copyable_v<T>, "shared_buffer::as<T>: T must be trivially copyable");
    return {reinterpret_cast<T*>(m_data), m_size / sizeof(T)};
  }
  template <class T>
  [[nodiscard]] std::span<const T> as() const noexcept {
    static_assert(std::is_trivially_copyable_v<T>, "shared_buffer::as<T>: T must be trivially copyable");
    return {reinterpret_cast<const T*>(m_data), m_size / sizeof(T)};
  }

  /// True if both handles refer to the same shared memory.
  [[nodiscard]] bool shares_with(const shared_buffer& other) const noexcept {
    return m_block != nullptr && m_block == other.m_block;
  }

  /// The block behind the handle (internal: the pool's wire format).
  [[nodiscard]] const std::shared_ptr<detail::shared_block>& block() const noexcept { return m_block; }
  explicit shared_buffer(std::shared_ptr<detail::shared_block> block) noexcept;

 private:
  std::shared_ptr<detail::shared_block> m_block;
  std::byte* m_data = nullptr;
  std::size_t m_size = 0;
};

namespace detail {
/// The descriptor of a shared_buffer nested in a value cereal saves or loads
/// for a process_pool (shared_buffer.cpp; codec.hpp says where it goes).
/// Outside a pool's encoding or decoding they throw serialization_error.
void save_nested(const shared_buffer& buffer);
shared_buffer load_nested(std::uint64_t size);
} // namespace detail

/// cereal: a shared_buffer inside a struct, tuple or container travels as its
/// size in the archive and its descriptor beside the message.
template <class Archive>
void save(Archive& archive, const shared_buffer& buffer) {
  archive(static_cast<std::uint64_t>(buffer.size()));
  detail::save_nested(buffer);
}
template <class Archive>
void load(Archive& archive, shared_buffer& buffer) {
  std::uint64_t size = 0;
  archive(size);
  buffer = detail::load_nested(size);
}

} // namespace simul
