#pragma once

// The byte buffers a task and its result travel in (internal).
//
// A message is a byte string plus a list of file descriptors that ride along
// with it (SCM_RIGHTS): the memfds that carry big contiguous payloads. The
// writer appends; the reader consumes in the same order and throws
// `serialization_error` on any underflow, so a short or garbled payload is an
// error and never undefined behaviour.

#include <simul/core/error.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace simul {

namespace detail {

/// Owns a file descriptor; closes it on destruction.
class unique_fd {
 public:
  unique_fd() noexcept = default;
  explicit unique_fd(int fd) noexcept : m_fd(fd) {}
  unique_fd(unique_fd&& other) noexcept : m_fd(std::exchange(other.m_fd, -1)) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    if (this != &other) {
      reset(std::exchange(other.m_fd, -1));
    }
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }

  [[nodiscard]] int get() const noexcept { return m_fd; }
  int release() noexcept { return std::exchange(m_fd, -1); }
  void reset(int fd = -1) noexcept;
  explicit operator bool() const noexcept { return m_fd >= 0; }

 private:
  int m_fd = -1;
};

/// Payloads at least this big are written and received in memory advised
/// for huge pages (advise_huge_pages).
inline constexpr std::size_t k_huge_payload = std::size_t{4} << 20;

/// Bytes and descriptors being written.
struct out_message {
  std::string bytes;
  std::vector<unique_fd> fds;
  std::size_t shm_threshold = std::size_t{1} << 20;

  void put_raw(const void* data, std::size_t size) { bytes.append(static_cast<const char*>(data), size); }

  template <class T>
  void put_pod(const T& value) {
    put_raw(&value, sizeof(T));
  }

  /// A contiguous blob: inline below the threshold, else through a memfd.
  void put_blob(const void* data, std::size_t size);

  /// A task's result blob at least this big stays in the value's own memory
  /// (`apart`) instead of being copied into `bytes`; the transport sends it
  /// after `bytes` as a message of its own (mpi_pool's worker ranks). Never,
  /// by default: a process pool's results go inline or through a memfd.
  std::size_t apart_threshold = ~std::size_t{0};
  /// The blob left apart (encode_result): its bytes, and the value that holds them.
  struct apart_blob {
    const void* data = nullptr;
    std::size_t size = 0;
    std::shared_ptr<const void> owner;
  } apart;
  /// Leaves the `size` bytes at `data`, which `owner` keeps alive, apart;
  /// `bytes` gets only their tag and size. One blob per message.
  void put_apart(std::shared_ptr<const void> owner, const void* data, std::size_t size);
};

/// Bytes and descriptors being read.
struct in_message {
  const char* data = nullptr;
  std::size_t size = 0;
  std::size_t pos = 0;
  std::vector<unique_fd>* fds = nullptr;
  std::size_t next_fd = 0;
  /// The bytes of the blob the sender left apart (out_message::apart), which
  /// arrived on their own; null if none did.
  const char* apart_data = nullptr;
  std::size_t apart_size = 0;

  const char* take(std::size_t n) {
    if (n > size - pos) {
      throw serialization_error("process_pool: message truncated (wanted " + std::to_string(n) + " more bytes, " +
                                std::to_string(size - pos) + " left)");
    }
    const char* p = data + pos;
    pos += n;
    return p;
  }

  template <class T>
  T get_pod() {
    T value;
    std::memcpy(static_cast<void*>(&value), take(sizeof(T)), sizeof(T));
    return value;
  }

  bool blob_in_shm = false;
  bool blob_apart = false;
  /// The mapping of the memfd blob being read (between `blob_data` and `end_blob`).
  void* shm_map = nullptr;
  std::size_t shm_cap = 0;
  int shm_fd = -1;
  std::uint64_t shm_dev = 0;
  std::uint64_t shm_ino = 0;

  in_message() = default;
  in_message(const char* d, std::size_t n, std::size_t p, std::vector<unique_fd>* f, std::size_t nf)
      : data(d), size(n), pos(p), fds(f), next_fd(nf) {}
  in_message(const in_message&) = delete;
  in_message& operator=(const in_message&) = delete;
  ~in_message() { end_blob(); }

  /// Starts reading a blob written by `put_blob`: returns its size in bytes.
  std::size_t begin_blob();
  /// The `size` bytes of the blob `begin_blob` announced, in place (in the
  /// message, in the memfd's mapping, or apart), valid until `end_blob`.
  const char* blob_data(std::size_t size);
  /// Ends the blob `blob_data` gave: a memfd goes to the payload cache.
  void end_blob() noexcept;
  /// Copies the body of the blob `begin_blob` announced into `out`.
  void read_blob_body(void* out, std::size_t size);
};

/// Around a fork (the zygote's): the parent takes the payload cache's lock
/// before, so no other thread is changing it at the fork, and releases it
/// after; the child drops every cached memfd (they are the parent's to
/// write) and then releases its copy of the lock.
void payload_cache_before_fork() noexcept;
void payload_cache_parent_after_fork() noexcept;
void payload_cache_child_after_fork() noexcept;

/// Releases the memfds the payload cache holds (a pool that goes away calls it).
void payload_cache_clear() noexcept;

/// The address every code id is relative to (a function inside the library).
void code_anchor() noexcept;

/// A code address as an id that stays valid across fork (same binary, same
/// mapping). A transport to another machine would need a registry instead.
template <class FnPtr>
std::uint64_t code_id(FnPtr address) noexcept {
  return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(address) -
                                    reinterpret_cast<std::uintptr_t>(&code_anchor));
}

/// The function pointer of type `FnPtr` that `code_id` gave `id`.
template <class FnPtr>
FnPtr code_address(std::uint64_t id) noexcept {
  return reinterpret_cast<FnPtr>(reinterpret_cast<std::uintptr_t>(&code_anchor) + static_cast<std::uintptr_t>(id));
}

/// In a worker, the socket to the parent; -1 in any other process. For tests
/// that need to forge a corrupt frame; nothing else should touch it.
int worker_channel() noexcept;

/// Asks the kernel to back [data, data + size) with transparent huge pages,
/// before it is first touched: filling a fresh 64 MiB buffer takes 16,384 page
/// faults with 4 KiB pages and 32 with 2 MiB ones. A hint; errors are ignored.
void advise_huge_pages(void* data, std::size_t size) noexcept;

// `demangle` (a type's name as text) is core's, <simul/core/error.hpp>.

} // namespace detail
} // namespace simul
