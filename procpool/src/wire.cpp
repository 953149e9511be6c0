// Buffers, blobs (inline or memfd), code ids and the socket primitives.

#include "protocol.hpp"

#include <simul/procpool/detail/wire.hpp>

#include <cxxabi.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <typeinfo>

namespace simul::detail {

void unique_fd::reset(int fd) noexcept {
  if (m_fd >= 0) {
    ::close(m_fd);
  }
  m_fd = fd;
}

void code_anchor() noexcept {
  // Only its address matters. The asm keeps the function distinct and alive.
  asm volatile("");
}

std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> text(abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
  return status == 0 && text ? std::string(text.get()) : std::string(mangled);
}

void advise_huge_pages(void* data, std::size_t size) noexcept {
  constexpr std::uintptr_t page = 4096;
  const auto begin = (reinterpret_cast<std::uintptr_t>(data) + page - 1) & ~(page - 1);
  const auto end = (reinterpret_cast<std::uintptr_t>(data) + size) & ~(page - 1);
  if (end > begin) {
    ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
  }
}

namespace {
constexpr std::uint8_t k_inline_blob = 0;
constexpr std::uint8_t k_shm_blob = 1;

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
    void* map = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd.get(), 0);
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
      void* map = ::mmap(nullptr, cap, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd.get(), 0);
      if (map == MAP_FAILED) {
        // Perhaps read-only: map it so, and do not keep it.
        map = ::mmap(nullptr, cap, PROT_READ, MAP_SHARED, r.fd.get(), 0);
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

  /// After fork, in the child: forget everything without the lock.
  void drop_unlocked() noexcept {
    for (auto& r : m_free) {
      unmap(r);
      r.fd.reset();
    }
    for (auto& r : m_lent) {
      unmap(r);
    }
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

// Never destroyed: a payload may be read while static destructors run, and a
// forked child replaces it without touching its lock.
payload_cache* g_payload_cache = new payload_cache; // NOLINT: deliberately leaked

payload_cache& cache() { return *g_payload_cache; }
} // namespace

void payload_cache_after_fork() noexcept {
  g_payload_cache->drop_unlocked();
  g_payload_cache = new payload_cache; // the old one's lock may be held by a thread that is not here
}

void payload_cache_clear() noexcept { cache().clear(); }

void out_message::put_blob(const void* data, std::size_t size) {
  if (size < shm_threshold || size == 0) {
    put_pod(k_inline_blob);
    put_pod(static_cast<std::uint64_t>(size));
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

std::size_t in_message::begin_blob() {
  end_blob();
  const auto tag = get_pod<std::uint8_t>();
  const auto bytes = get_pod<std::uint64_t>();
  if (tag == k_inline_blob) {
    if (bytes > size - pos) {
      throw serialization_error("process_pool: a payload claims more bytes than its message holds");
    }
    blob_in_shm = false;
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
                const std::vector<unique_fd>& fds) {
  const frame_out frame{kind, id, fn, &payload, &fds};
  return send_frames(fd, &frame, 1) == 1;
}

namespace {
/// Sends `count` iovecs whole (blocking, retrying on EINTR and partial
/// writes). `control`, if any, goes with the first byte. Adds the bytes
/// written to `sent`; false if the peer is gone.
bool send_iovecs(int fd, iovec* parts, std::size_t count, void* control, std::size_t control_size, std::size_t& sent) {
  msghdr msg{};
  msg.msg_iov = parts;
  msg.msg_iovlen = count;
  msg.msg_control = control;
  msg.msg_controllen = control_size;
  while (msg.msg_iovlen > 0) {
    const auto n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return false;
    }
    sent += static_cast<std::size_t>(n);
    // Descriptors went with the first bytes; advance the iovecs past what was sent.
    msg.msg_control = nullptr;
    msg.msg_controllen = 0;
    auto left = static_cast<std::size_t>(n);
    while (msg.msg_iovlen > 0 && left >= msg.msg_iov[0].iov_len) {
      left -= msg.msg_iov[0].iov_len;
      ++msg.msg_iov;
      --msg.msg_iovlen;
    }
    if (msg.msg_iovlen > 0) {
      msg.msg_iov[0].iov_base = static_cast<char*>(msg.msg_iov[0].iov_base) + left;
      msg.msg_iov[0].iov_len -= left;
    }
  }
  return true;
}
} // namespace

std::size_t send_frames(int fd, const frame_out* frames, std::size_t count) {
  constexpr std::size_t k_frames_per_call = 512; // two iovecs each, under IOV_MAX (1024)
  // Raw storage: only the headers in use are constructed.
  alignas(frame_header) unsigned char header_storage[sizeof(frame_header) * k_frames_per_call];
  auto* headers = reinterpret_cast<frame_header*>(header_storage);
  iovec parts[2 * k_frames_per_call];
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * k_max_fds)];
  std::size_t next = 0;
  while (next < count) {
    std::size_t nparts = 0;
    std::size_t nfds = 0;
    std::size_t taken = 0;
    auto* cm = reinterpret_cast<cmsghdr*>(control);
    int* fd_out = reinterpret_cast<int*>(CMSG_DATA(cm));
    while (next + taken < count && taken < k_frames_per_call) {
      const auto& frame = frames[next + taken];
      const std::size_t frame_fds = frame.fds != nullptr ? frame.fds->size() : 0;
      if (frame_fds > k_max_fds) {
        return next + taken;
      }
      if (nfds + frame_fds > k_max_fds) {
        break; // its descriptors go with the next call
      }
      auto& header = *::new (static_cast<void*>(headers + taken)) frame_header{};
      header.kind = static_cast<std::uint16_t>(frame.kind);
      header.nfds = static_cast<std::uint16_t>(frame_fds);
      header.id = frame.id;
      header.fn = frame.fn;
      header.size = frame.payload != nullptr ? frame.payload->size() : 0;
      parts[nparts++] = {&header, sizeof(header)};
      if (header.size > 0) {
        parts[nparts++] = {const_cast<char*>(frame.payload->data()), frame.payload->size()};
      }
      for (std::size_t i = 0; i < frame_fds; ++i) {
        const int raw = (*frame.fds)[i].get();
        std::memcpy(fd_out + nfds + i, &raw, sizeof(int));
      }
      nfds += frame_fds;
      ++taken;
    }
    if (nfds > 0) {
      std::memset(cm, 0, sizeof(cmsghdr));
      cm->cmsg_level = SOL_SOCKET;
      cm->cmsg_type = SCM_RIGHTS;
      cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    }
    std::size_t sent = 0;
    if (!send_iovecs(fd, parts, nparts, nfds > 0 ? control : nullptr, nfds > 0 ? CMSG_SPACE(sizeof(int) * nfds) : 0,
                     sent)) {
      // Count the frames that went out whole.
      for (std::size_t i = 0; i < taken; ++i) {
        const auto size = sizeof(frame_header) + static_cast<std::size_t>(headers[i].size);
        if (sent < size) {
          break;
        }
        sent -= size;
        ++next;
      }
      return next;
    }
    next += taken;
  }
  return count;
}

namespace {
void take_fds(msghdr& msg, std::vector<unique_fd>& fds) {
  for (auto* cm = CMSG_FIRSTHDR(&msg); cm != nullptr; cm = CMSG_NXTHDR(&msg, cm)) {
    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
      const auto count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const auto* in = reinterpret_cast<const int*>(CMSG_DATA(cm));
      for (std::size_t i = 0; i < count; ++i) {
        int received = -1;
        std::memcpy(&received, in + i, sizeof(int));
        fds.emplace_back(received);
      }
    }
  }
}
} // namespace

long receive_some(int fd, char* out, std::size_t capacity, std::vector<unique_fd>& fds, bool block) {
  iovec part{out, capacity};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * k_max_fds)];
  msghdr msg{};
  msg.msg_iov = &part;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  for (;;) {
    const auto n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | (block ? 0 : MSG_DONTWAIT));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : -2;
    }
    take_fds(msg, fds);
    if ((msg.msg_flags & MSG_CTRUNC) != 0) {
      return -2;
    }
    return static_cast<long>(n);
  }
}

bool send_control(int fd, const control_msg& record, int attached_fd) {
  iovec part{const_cast<control_msg*>(&record), sizeof(record)};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &part;
  msg.msg_iovlen = 1;
  if (attached_fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    auto* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cm), &attached_fd, sizeof(int));
  }
  for (;;) {
    const auto n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    return n == static_cast<long>(sizeof(record));
  }
}

int receive_control(int fd, control_msg& record, unique_fd& attached, bool block) {
  iovec part{&record, sizeof(record)};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
  msghdr msg{};
  msg.msg_iov = &part;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  for (;;) {
    const auto n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | (block ? 0 : MSG_DONTWAIT));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : -2;
    }
    std::vector<unique_fd> fds;
    take_fds(msg, fds);
    if (n == 0) {
      return 0;
    }
    if (n != static_cast<long>(sizeof(record))) {
      return -2;
    }
    if (!fds.empty()) {
      attached = std::move(fds.front());
    }
    return 1;
  }
}

namespace {
std::mutex g_pool_fds_mutex;
std::vector<int> g_pool_fds;
} // namespace

void register_pool_fd(int fd) {
  std::lock_guard lock(g_pool_fds_mutex);
  g_pool_fds.push_back(fd);
}

void unregister_pool_fd(int fd) {
  std::lock_guard lock(g_pool_fds_mutex);
  g_pool_fds.erase(std::remove(g_pool_fds.begin(), g_pool_fds.end(), fd), g_pool_fds.end());
}

std::vector<int> pool_fds_snapshot() {
  std::lock_guard lock(g_pool_fds_mutex);
  return g_pool_fds;
}

std::pair<std::string, std::string> describe_current_exception() {
  std::string type = "unknown exception";
  if (const std::type_info* info = abi::__cxa_current_exception_type()) {
    type = demangle(info->name());
  }
  std::string message;
  try {
    throw;
  } catch (const std::exception& e) {
    message = e.what();
  } catch (...) {
    message = "(not a std::exception)";
  }
  return {type, message};
}

} // namespace simul::detail
