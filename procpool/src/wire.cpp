// Code ids, descriptors and the socket primitives (blobs and memfds: payload.cpp).

#include "protocol.hpp"

#include <simul/procpool/detail/codec/message.hpp>

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

void advise_huge_pages(void* data, std::size_t size) noexcept {
  constexpr std::uintptr_t page = 4096;
  const auto begin = (reinterpret_cast<std::uintptr_t>(data) + page - 1) & ~(page - 1);
  const auto end = (reinterpret_cast<std::uintptr_t>(data) + size) & ~(page - 1);
  if (end > begin) {
    ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
  }
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
      header.run_begin = frame.run_begin;
      header.run_end = frame.run_end;
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
  std::vector<unique_fd> fds;
  const auto n = receive_some(fd, reinterpret_cast<char*>(&record), sizeof(record), fds, block);
  if (n <= 0) {
    return static_cast<int>(n); // 0: closed, -1: would block, -2: error
  }
  if (n != static_cast<long>(sizeof(record))) {
    return -2;
  }
  if (!fds.empty()) {
    attached = std::move(fds.front());
  }
  return 1;
}

namespace {
struct pool_fds {
  std::mutex mutex;
  std::vector<int> fds;
};

// Never destroyed: a pool that is a global outlives this file's statics, and
// its I/O thread still registers sockets while static destructors run.
pool_fds& registered() {
  static auto* const instance = new pool_fds; // NOLINT: deliberately leaked
  return *instance;
}
} // namespace

void register_pool_fd(int fd) {
  auto& r = registered();
  std::lock_guard lock(r.mutex);
  r.fds.push_back(fd);
}

void unregister_pool_fd(int fd) {
  auto& r = registered();
  std::lock_guard lock(r.mutex);
  r.fds.erase(std::remove(r.fds.begin(), r.fds.end(), fd), r.fds.end());
}

std::vector<int> pool_fds_snapshot() {
  auto& r = registered();
  std::lock_guard lock(r.mutex);
  return r.fds;
}

} // namespace simul::detail
