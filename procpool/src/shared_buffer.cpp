// shared_buffer: a memfd mapped into every process that holds a handle.
//
// A process keeps one mapping per memfd: a registry of the blocks alive here,
// keyed by the memfd's inode, lets a buffer that comes back from a worker
// resolve to the block it was sent from, so the caller gets its own memory
// back, with no new mapping.

#include "protocol.hpp"

#include <simul/procpool/detail/codec/codec.hpp>
#include <simul/procpool/shared_buffer.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <system_error>
#include <utility>
#include <vector>

namespace simul::detail {

struct shared_block : std::enable_shared_from_this<shared_block> {
  unique_fd fd;
  std::byte* map = nullptr;
  std::size_t size = 0;
  dev_t dev = 0;
  ino_t ino = 0;

  shared_block() = default;
  shared_block(const shared_block&) = delete;
  shared_block& operator=(const shared_block&) = delete;
  ~shared_block();
};

namespace {

class block_registry {
 public:
  void add(shared_block* block) {
    std::lock_guard lock(m_mutex);
    m_blocks.push_back(block);
  }

  void remove(shared_block* block) noexcept {
    std::lock_guard lock(m_mutex);
    for (auto& b : m_blocks) {
      if (b == block) {
        b = m_blocks.back();
        m_blocks.pop_back();
        return;
      }
    }
  }

  /// The live block on this memfd, if this process has one.
  std::shared_ptr<shared_block> find(dev_t dev, ino_t ino) {
    std::lock_guard lock(m_mutex);
    for (auto* b : m_blocks) {
      if (b->dev == dev && b->ino == ino) {
        return b->weak_from_this().lock(); // empty if its last handle is going away
      }
    }
    return nullptr;
  }

  void lock() noexcept { m_mutex.lock(); }
  void unlock() noexcept { m_mutex.unlock(); }
  /// In a forked child, with the lock held: the blocks are the parent's.
  void forget_unlocked() noexcept { m_blocks.clear(); }

 private:
  std::mutex m_mutex;
  std::vector<shared_block*> m_blocks;
};

// Never destroyed: a handle may be dropped while static destructors run.
// Made on first use, so a buffer made (or an exec'd zygote started) by a
// static initializer that runs before this file's finds it ready.
block_registry& registry() {
  static auto* const instance = new block_registry; // NOLINT: deliberately leaked
  return *instance;
}

[[noreturn]] void fail(const char* what) {
  throw std::system_error(errno, std::generic_category(), std::string("simul::shared_buffer: ") + what);
}

/// Maps `fd`, the memfd `info` describes (read and write, pages populated),
/// and registers the block.
std::shared_ptr<shared_block> map_block(unique_fd fd, std::size_t size, const struct stat& info) {
  auto block = std::make_shared<shared_block>(); // first: nothing to undo if it throws
  void* map = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd.get(), 0);
  if (map == MAP_FAILED) {
    fail("mmap");
  }
  block->fd = std::move(fd);
  block->map = static_cast<std::byte*>(map);
  block->size = size;
  block->dev = info.st_dev;
  block->ino = info.st_ino;
  registry().add(block.get());
  return block;
}

} // namespace

shared_block::~shared_block() {
  if (map != nullptr) {
    registry().remove(this);
    ::munmap(map, size);
  }
}

void shared_blocks_before_fork() noexcept { registry().lock(); }
void shared_blocks_parent_after_fork() noexcept { registry().unlock(); }
void shared_blocks_child_after_fork() noexcept {
  registry().forget_unlocked();
  registry().unlock();
}

namespace {

/// A dup of the buffer's memfd, for a message to carry.
unique_fd descriptor_to_send(const shared_buffer& buffer) {
  unique_fd copy(::fcntl(buffer.block()->fd.get(), F_DUPFD_CLOEXEC, 0));
  if (!copy) {
    throw serialization_error(std::string("process_pool: sending a shared_buffer failed (dup: ") +
                              std::strerror(errno) + ")");
  }
  return copy;
}

/// The buffer of `size` bytes whose descriptor is the next one of `in`.
shared_buffer receive(in_message& in, std::uint64_t size) {
  if (size == 0) {
    return {};
  }
  if (in.fds == nullptr || in.next_fd >= in.fds->size()) {
    throw serialization_error("process_pool: a shared_buffer arrived without its descriptor");
  }
  unique_fd fd = std::move((*in.fds)[in.next_fd++]);
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0 || static_cast<std::uint64_t>(info.st_size) != size) {
    throw serialization_error("process_pool: a shared_buffer's memory is not the size announced");
  }
  if (auto block = registry().find(info.st_dev, info.st_ino); block != nullptr && block->size == size) {
    return shared_buffer(std::move(block)); // our own memory, back from a worker
  }
  try {
    return shared_buffer(map_block(std::move(fd), static_cast<std::size_t>(size), info));
  } catch (const std::system_error& e) {
    throw serialization_error(std::string("process_pool: mapping a received shared_buffer failed: ") + e.what());
  }
}

// The scopes of codec.hpp: where nested buffers' descriptors go and come from.
thread_local std::vector<unique_fd>* t_nested_sink = nullptr;
thread_local in_message* t_nested_source = nullptr;

} // namespace

void encode_shared(out_message& out, const shared_buffer& buffer) {
  out.put_pod(static_cast<std::uint64_t>(buffer.size()));
  if (buffer.size() != 0) {
    out.fds.push_back(descriptor_to_send(buffer));
  }
}

shared_buffer decode_shared(in_message& in) { return receive(in, in.get_pod<std::uint64_t>()); }

nested_fds_out::nested_fds_out(std::vector<unique_fd>& sink) noexcept
    : m_previous(std::exchange(t_nested_sink, &sink)) {}
nested_fds_out::~nested_fds_out() { t_nested_sink = m_previous; }
nested_fds_in::nested_fds_in(in_message& in) noexcept : m_previous(std::exchange(t_nested_source, &in)) {}
nested_fds_in::~nested_fds_in() { t_nested_source = m_previous; }

void save_nested(const shared_buffer& buffer) {
  if (t_nested_sink == nullptr) {
    throw serialization_error("shared_buffer: only a process_pool can send one; another archive would not hold its "
                              "bytes");
  }
  if (buffer.size() != 0) {
    t_nested_sink->push_back(descriptor_to_send(buffer));
  }
}

shared_buffer load_nested(std::uint64_t size) {
  if (t_nested_source == nullptr) {
    throw serialization_error("shared_buffer: only a process_pool can receive one; this archive holds no memory");
  }
  return receive(*t_nested_source, size);
}

} // namespace simul::detail

namespace simul {

shared_buffer::shared_buffer(std::size_t size) {
  if (size == 0) {
    return;
  }
  detail::unique_fd fd(::memfd_create("simul-shared-buffer", MFD_CLOEXEC));
  if (!fd) {
    detail::fail("memfd_create");
  }
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    detail::fail("ftruncate");
  }
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) {
    detail::fail("fstat");
  }
  m_block = detail::map_block(std::move(fd), size, info);
  m_data = m_block->map;
  m_size = size;
}

shared_buffer::shared_buffer(std::span<const std::byte> bytes) : shared_buffer(bytes.size()) {
  if (!bytes.empty()) {
    std::memcpy(m_data, bytes.data(), bytes.size());
  }
}

shared_buffer::shared_buffer(std::shared_ptr<detail::shared_block> block) noexcept : m_block(std::move(block)) {
  if (m_block != nullptr) {
    m_data = m_block->map;
    m_size = m_block->size;
  }
}

} // namespace simul
