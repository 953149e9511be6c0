// Big payloads: blobs inline or in a memfd, and the cache that lets memfds
// circulate between the parent and its workers instead of being made anew.

#include "../protocol.hpp"

#include <simul/procpool/detail/codec/message.hpp>

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace simul::detail {

namespace {
constexpr std::uint8_t k_inline_blob = 0;
constexpr std::uint8_t k_shm_blob = 1;
constexpr std::uint8_t k_apart_blob = 2;

void write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const auto n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      throw serialization_error(std::string("process_pool: writing a memfd payload failed: ") + std::strerror(errno));
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}
} // namespace

// ---------------------------------------------------------------- the payload cache
//
// Fresh memory is what makes big payloads slow: a new 64 MiB memfd costs
// 16,384 page allocations, and on a virtual machine each first touch of a
// page can cost far more than the copy. So memfds circulate instead of being
// made and dropped: a side that has read a memfd payload keeps the memfd, with
// its mapping, and writes its next big payload into it (a worker answers in
// the memfd its argument came in; the parent sends the next argument in the
// memfd the result came in). A side that sends a memfd keeps its mapping, so
// when the same memfd (same inode) comes back, no new mapping is made.
//
// Ownership is exact: a memfd is written only by the side that holds it in
// its `free` list, and it leaves that list when it is sent. Bounded: at most
// k_cache_bytes of free memfds and as many of kept mappings per process,
// oldest dropped first.

namespace {
constexpr std::size_t k_cache_bytes = std::size_t{256} << 20;
constexpr std::size_t k_cache_entries = 8;

struct region {
  unique_fd fd; ///< free regions only; a lent one's descriptor went with its message
  void* map = nullptr;
  std::size_t cap = 0;
  dev_t dev = 0;
  ino_t ino = 0;
};

void unmap(region& r) noexcept {
  if (r.map != nullptr) {
    ::munmap(r.map, r.cap);
    r.map = nullptr;
  }
}

class payload_cache {
 public:
  /// A writable region of at least `size` bytes that this process owns, or
  /// an empty one (map == nullptr) if none can be made.
  region take(std::size_t size) {
    {
      std::lock_guard lock(m_mutex);
      auto best = m_free.end();
      for (auto it = m_free.begin(); it != m_free.end(); ++it) {
        if (it->cap >= size && (best == m_free.end() || it->cap < best->cap)) {
          best = it;
        }
      }
      if (best != m_free.end()) {
        region r = std::move(*best);
        m_free.erase(best);
        m_free_bytes -= r.cap;
        return r;
      }
    }
    region r;
    r.fd.reset(::memfd_create("simul-payload", MFD_CLOEXEC));
    if (!r.fd) {
      throw serialization_error(std::string("process_pool: memfd_create failed: ") + std::strerror(errno));
    }
    if (::ftruncate(r.fd.get(), static_cast<off_t>(size)) != 0) {
      throw serialization_error(std::string("process_pool: sizing a memfd failed: ") + std::strerror(errno));
    }
    struct stat info {};
    ::fstat(r.fd.get(), &info);
    r.dev = info.st_dev;
    r.ino = info.st_ino;
    r.cap = size;
    // Populated: its pages are made in one call, not one fault at a time.
    void* map = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r.fd.get(), 0);
    r.map = map == MAP_FAILED ? nullptr : map;
    return r;
  }

  /// `r` was sent away: keep its mapping (not its descriptor) in case it comes back.
  void lend(region&& r) noexcept {
    r.fd.reset();
    if (r.map == nullptr) {
      return;
    }
    std::lock_guard lock(m_mutex);
    m_lent.push_back(std::move(r));
    m_lent_bytes += m_lent.back().cap;
    trim(m_lent, m_lent_bytes);
  }

  /// Maps a received memfd (reusing the mapping kept when this process sent
  /// it, if it did). Takes the descriptor. map == nullptr if it cannot be mapped.
  region receive(unique_fd&& fd, std::size_t at_least) {
    struct stat info {};
    if (::fstat(fd.get(), &info) != 0 || static_cast<std::uint64_t>(info.st_size) < at_least) {
      throw serialization_error("process_pool: a shared-memory payload is shorter than announced");
    }
    const auto cap = static_cast<std::size_t>(info.st_size);
    region r;
    {
      std::lock_guard lock(m_mutex);
      for (auto it = m_lent.begin(); it != m_lent.end(); ++it) {
        if (it->dev == info.st_dev && it->ino == info.st_ino && it->cap == cap) {
          r = std::move(*it);
          m_lent.erase(it);
          m_lent_bytes -= r.cap;
          break;
        }
      }
    }
    r.fd = std::move(fd);
    if (r.map == nullptr && cap > 0) {
      void* map = ::mmap(nullptr, cap, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r.fd.get(), 0);
      if (map == MAP_FAILED) {
        // Perhaps read-only: map it so, and do not keep it.
        map = ::mmap(nullptr, cap, PROT_READ, MAP_SHARED | MAP_POPULATE, r.fd.get(), 0);
        r.fd.reset();
      }
      r.map = map == MAP_FAILED ? nullptr : map;
    }
    r.cap = cap;
    r.dev = info.st_dev;
    r.ino = info.st_ino;
    return r;
  }

  /// A region this process has finished reading: it may write into it next.
  void give_back(region&& r) noexcept {
    if (!r.fd || r.map == nullptr || r.cap > k_cache_bytes) {
      unmap(r);
      return;
    }
    std::lock_guard lock(m_mutex);
    m_free.push_back(std::move(r));
    m_free_bytes += m_free.back().cap;
    trim(m_free, m_free_bytes);
  }

  void clear() noexcept {
    std::vector<region> free;
    std::vector<region> lent;
    {
      std::lock_guard lock(m_mutex);
      free.swap(m_free);
      lent.swap(m_lent);
      m_free_bytes = m_lent_bytes = 0;
    }
    for (auto& r : free) {
      unmap(r);
    }
    for (auto& r : lent) {
      unmap(r);
    }
  }

  void lock() noexcept { m_mutex.lock(); }
  void unlock() noexcept { m_mutex.unlock(); }

  /// After fork, in the child, with the lock held: forget everything.
  void drop_unlocked() noexcept {
    for (auto& r : m_free) {
      unmap(r);
    }
    for (auto& r : m_lent) {
      unmap(r);
    }
    m_free.clear();
    m_lent.clear();
    m_free_bytes = m_lent_bytes = 0;
  }

 private:
  static void trim(std::vector<region>& list, std::size_t& bytes) noexcept {
    while (!list.empty() && (bytes > k_cache_bytes || list.size() > k_cache_entries)) {
      bytes -= list.front().cap;
      unmap(list.front());
      list.erase(list.begin());
    }
  }

  std::mutex m_mutex;
  std::vector<region> m_free;
  std::vector<region> m_lent;
  std::size_t m_free_bytes = 0;
  std::size_t m_lent_bytes = 0;
};

// Never destroyed: a payload may be read while static destructors run.
// Made on first use, so a task run by an exec'd zygote's worker (which may
// start before this file's static initializers have run) finds it ready.
payload_cache& cache() {
  static auto* const instance = new payload_cache; // NOLINT: deliberately leaked
  return *instance;
}
} // namespace

void payload_cache_before_fork() noexcept { cache().lock(); }

void payload_cache_parent_after_fork() noexcept { cache().unlock(); }

void payload_cache_child_after_fork() noexcept {
  // The lock is held by this thread (the one that forked), so the lists are
  // consistent: forget them, then release the lock.
  cache().drop_unlocked();
  cache().unlock();
}

void payload_cache_clear() noexcept { cache().clear(); }

void out_message::put_blob(const void* data, std::size_t size) {
  if (size < shm_threshold || size == 0) {
    put_pod(k_inline_blob);
    put_pod(static_cast<std::uint64_t>(size));
    if (size >= k_huge_payload && bytes.capacity() - bytes.size() < size) {
      // Grow once, untouched, and advise before the copy faults it in: 32
      // faults for 64 MiB instead of 16,384, and a buffer kept for the next
      // message (mpi_pool's) stays in huge pages.
      bytes.reserve(bytes.size() + size);
      advise_huge_pages(bytes.data() + bytes.size(), bytes.capacity() - bytes.size());
    }
    put_raw(data, size);
    return;
  }
  // The bytes go once into a memfd (a cached one if this process holds one
  // big enough); the socket carries only the descriptor.
  region r = cache().take(size);
  if (r.map == nullptr) {
    write_all(r.fd.get(), static_cast<const char*>(data), size); // no address space: fall back to write()
  } else {
    std::memcpy(r.map, data, size);
  }
  put_pod(k_shm_blob);
  put_pod(static_cast<std::uint64_t>(size));
  fds.push_back(std::move(r.fd));
  cache().lend(std::move(r));
}

void out_message::put_apart(std::shared_ptr<const void> owner, const void* data, std::size_t size) {
  if (apart.data != nullptr) {
    throw serialization_error("mpi_pool: a message holds one blob apart at most");
  }
  put_pod(k_apart_blob);
  put_pod(static_cast<std::uint64_t>(size));
  apart = apart_blob{data, size, std::move(owner)};
}

std::size_t in_message::begin_blob() {
  end_blob();
  const auto tag = get_pod<std::uint8_t>();
  const auto bytes = get_pod<std::uint64_t>();
  blob_in_shm = false;
  blob_apart = false;
  if (tag == k_inline_blob) {
    if (bytes > size - pos) {
      throw serialization_error("process_pool: a payload claims more bytes than its message holds");
    }
    return static_cast<std::size_t>(bytes);
  }
  if (tag == k_apart_blob) {
    if (apart_data == nullptr) {
      throw serialization_error("mpi_pool: a payload sent apart did not arrive with its message");
    }
    if (bytes != apart_size) {
      throw serialization_error("mpi_pool: a payload sent apart has " + std::to_string(apart_size) +
                                " bytes, not the " + std::to_string(bytes) + " announced");
    }
    blob_apart = true;
    return static_cast<std::size_t>(bytes);
  }
  if (tag != k_shm_blob) {
    throw serialization_error("process_pool: unknown payload tag");
  }
  if (fds == nullptr || next_fd >= fds->size()) {
    throw serialization_error("process_pool: a shared-memory payload arrived without its descriptor");
  }
  struct stat info {};
  if (::fstat((*fds)[next_fd].get(), &info) != 0 || static_cast<std::uint64_t>(info.st_size) < bytes) {
    throw serialization_error("process_pool: a shared-memory payload is shorter than announced");
  }
  blob_in_shm = true;
  return static_cast<std::size_t>(bytes);
}

const char* in_message::blob_data(std::size_t bytes) {
  if (blob_apart) {
    // Read once: a second tag in the same message finds no bytes.
    blob_apart = false;
    return std::exchange(apart_data, nullptr);
  }
  if (!blob_in_shm) {
    return bytes > 0 ? take(bytes) : data + pos;
  }
  region r = cache().receive(std::move((*fds)[next_fd]), bytes);
  ++next_fd;
  blob_in_shm = false;
  if (r.map == nullptr) {
    throw serialization_error(std::string("process_pool: mapping a shared-memory payload failed: ") +
                              std::strerror(errno));
  }
  shm_map = r.map;
  shm_cap = r.cap;
  // The descriptor stays with the mapping until end_blob hands both to the cache.
  shm_fd = r.fd.release();
  shm_dev = static_cast<std::uint64_t>(r.dev);
  shm_ino = static_cast<std::uint64_t>(r.ino);
  return static_cast<const char*>(shm_map);
}

void in_message::end_blob() noexcept {
  if (shm_map == nullptr) {
    return;
  }
  region r;
  r.fd.reset(shm_fd);
  r.map = shm_map;
  r.cap = shm_cap;
  r.dev = static_cast<dev_t>(shm_dev);
  r.ino = static_cast<ino_t>(shm_ino);
  shm_fd = -1;
  shm_map = nullptr;
  shm_cap = 0;
  cache().give_back(std::move(r));
}

void in_message::read_blob_body(void* out, std::size_t bytes) {
  const char* from = blob_data(bytes);
  if (bytes > 0) {
    std::memcpy(out, from, bytes);
  }
  end_blob();
}

bool send_frame(int fd, frame_kind kind, std::uint64_t id, std::uint64_t fn, const std::string& payload,
                const std::vector<unique_fd>& fds, std::int64_t run_begin, std::int64_t run_end) {
  const frame_out frame{kind, id, fn, &payload, &fds, run_begin, run_end};
  return send_frames(fd, &frame, 1) == 1;
}

} // namespace simul::detail
