// Files: libuv fs requests as detached requests awaited by tasks.

#include "io/io_internal.hpp"

#include <simul/loop/io/files.hpp>

#include <simul/loop/sleep.hpp>

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>

namespace simul::detail {
namespace {

class fs_wait_base;

/// What a finished request gives back.
struct fs_result {
  ssize_t result = 0;
  uv_stat_t stat{};
  std::string buffer;
};

struct fs_op {
  uv_fs_t req{};
  fs_wait_base* waiter = nullptr;
  std::string buffer; // the data to write, or the space read into
};

/// The part of an fs awaiter that does not depend on how the request starts.
class fs_wait_base : public waiter {
 public:
  fs_wait_base(const fs_wait_base&) = delete;
  fs_wait_base& operator=(const fs_wait_base&) = delete;

  bool await_ready() const noexcept { return false; }
  bool on_cancel() noexcept override {
    detach();
    abort_and_wake();
    return true;
  }

 protected:
  fs_wait_base(event_loop& loop, std::string what, std::string path, std::string buffer)
      : m_loop(loop), m_what(std::move(what)), m_path(std::move(path)), m_buffer(std::move(buffer)) {}
  ~fs_wait_base() { detach(); }

  template <class Start>
  bool begin(std::coroutine_handle<> h, Start& start) {
    if (!suspend_on(h)) {
      return false;
    }
    auto* op = new fs_op();
    op->waiter = this;
    op->req.data = op;
    op->buffer = std::move(m_buffer);
    const int rc = start(uv_loop(m_loop), *op, &on_done);
    if (rc < 0) {
      m_buffer = std::move(op->buffer);
      uv_fs_req_cleanup(&op->req);
      delete op;
      m_result = rc;
      wake();
      return true;
    }
    m_op = op;
    return true;
  }

  fs_result finish() {
    if (m_task != nullptr) {
      check_cancel();
    }
    if (m_result < 0) {
      throw_io_error(static_cast<int>(m_result), m_what, m_path);
    }
    return fs_result{m_result, m_stat, std::move(m_buffer)};
  }

 private:
  void detach() noexcept {
    if (m_op != nullptr) {
      m_op->waiter = nullptr;
      uv_cancel(reinterpret_cast<uv_req_t*>(&m_op->req)); // best effort: the callback frees the op
      m_op = nullptr;
    }
  }
  static void on_done(uv_fs_t* req) {
    auto* op = static_cast<fs_op*>(req->data);
    if (auto* self = op->waiter; self != nullptr) {
      self->m_op = nullptr;
      self->m_result = req->result;
      if (req->fs_type == UV_FS_STAT || req->fs_type == UV_FS_FSTAT) {
        self->m_stat = req->statbuf;
      }
      self->m_buffer = std::move(op->buffer);
      self->wake();
    }
    uv_fs_req_cleanup(req);
    delete op;
  }

  event_loop& m_loop;
  std::string m_what;
  std::string m_path;
  std::string m_buffer;
  fs_op* m_op = nullptr;
  ssize_t m_result = 0;
  uv_stat_t m_stat{};
};

template <class Start>
class fs_awaiter final : public fs_wait_base {
 public:
  fs_awaiter(std::string what, std::string path, Start start, std::string buffer = {})
      : fs_wait_base(running_loop_checked("file"), std::move(what), std::move(path), std::move(buffer)),
        m_start(std::move(start)) {}
  bool await_suspend(std::coroutine_handle<> h) { return begin(h, m_start); }
  fs_result await_resume() { return finish(); }

 private:
  Start m_start;
};

int parse_mode(const std::string& mode) {
  std::string m;
  for (char c : mode) {
    if (c != 'b') {
      m += c;
    }
  }
  if (m == "r") {
    return O_RDONLY;
  }
  if (m == "r+") {
    return O_RDWR;
  }
  if (m == "w") {
    return O_WRONLY | O_CREAT | O_TRUNC;
  }
  if (m == "w+") {
    return O_RDWR | O_CREAT | O_TRUNC;
  }
  if (m == "a") {
    return O_WRONLY | O_CREAT | O_APPEND;
  }
  if (m == "a+") {
    return O_RDWR | O_CREAT | O_APPEND;
  }
  if (m == "x") {
    return O_WRONLY | O_CREAT | O_EXCL;
  }
  if (m == "x+") {
    return O_RDWR | O_CREAT | O_EXCL;
  }
  throw error("open_file: unknown mode \"" + mode + "\" (use r, r+, w, w+, a, a+, x or x+)");
}

file_stat to_stat(const uv_stat_t& s) {
  file_stat out;
  out.size = s.st_size;
  out.mode = static_cast<std::uint32_t>(s.st_mode);
  out.mtime_ns = static_cast<std::int64_t>(s.st_mtim.tv_sec) * 1'000'000'000 + s.st_mtim.tv_nsec;
  return out;
}

// A read of up to this much whose bytes are all in the page cache is done on
// the loop thread: copying 1 MiB from the page cache takes tens of
// microseconds, about what a thread-pool round trip costs in wake-ups alone.
// Bigger reads go to the thread pool, so the loop never copies more at once.
constexpr std::size_t k_inline_read_max = std::size_t{1} << 20;
constexpr std::size_t k_max_request = std::size_t{1} << 30; // uv_buf_t's length is 32 bits

/// Reads what the page cache holds of `n` bytes at `offset` into `into`, on
/// the calling thread, never waiting for the disk (preadv2 with RWF_NOWAIT):
/// the bytes read (0 at the end of the file), or -1 when nothing could be
/// read without waiting or the system cannot do it (another file system, an
/// older kernel, an error): the caller then asks the thread pool, whose
/// answer is the one that counts.
ssize_t read_cached(int fd, char* into, std::size_t n, std::int64_t offset) noexcept {
#ifdef RWF_NOWAIT
  iovec v{into, n};
  while (true) {
    const auto r = ::preadv2(fd, &v, 1, offset, RWF_NOWAIT);
    if (r >= 0 || errno != EINTR) {
      return r;
    }
  }
#else
  (void)fd, (void)into, (void)n, (void)offset;
  return -1;
#endif
}

/// One read request on the thread pool: up to `n` bytes at `offset` into
/// `buffer` from index `at` (its size becomes at + n first, so a buffer
/// already that size is not filled again); gives the buffer back cut to
/// what was read.
task<std::string> pool_read(int fd, std::string path, std::int64_t offset, std::string buffer, std::size_t at,
                            std::size_t n) {
  buffer.resize(at + n);
  auto start = [fd, offset, at, n](uv_loop_t* loop, fs_op& op, uv_fs_cb cb) {
    uv_buf_t buf = uv_buf_init(op.buffer.data() + at, static_cast<unsigned>(n));
    return uv_fs_read(loop, &op.req, fd, &buf, 1, offset, cb);
  };
  auto done = co_await fs_awaiter("read", path, start, std::move(buffer));
  std::string out = std::move(done.buffer);
  out.resize(at + static_cast<std::size_t>(done.result));
  co_return out;
}

/// Appends up to `n` bytes read at `offset` to `buffer` (fewer only at the
/// end of the file, or past k_max_request). Bytes the page cache holds are
/// copied on the loop thread after letting the other tasks run once (a
/// cancellation point, and a loop reading a cached file does not starve the
/// others); the rest comes from one thread-pool request.
task<std::string> read_append(int fd, std::string path, std::int64_t offset, std::string buffer, std::size_t n) {
  n = std::min(n, k_max_request);
  const std::size_t at = buffer.size();
  if (n == 0) {
    co_return buffer;
  }
  if (n <= k_inline_read_max) {
    co_await yield_now();
    buffer.resize(at + n);
    const auto got = read_cached(fd, buffer.data() + at, n, offset);
    if (got == 0 || static_cast<std::size_t>(got) == n) {
      buffer.resize(at + static_cast<std::size_t>(got));
      co_return buffer;
    }
    // The rest is not cached (or the file ends sooner), or nothing is: the
    // pool reads into the same space (pool_read's resize fills nothing again).
    const auto have = static_cast<std::size_t>(std::max<ssize_t>(got, 0));
    co_return co_await pool_read(fd, std::move(path), offset + static_cast<std::int64_t>(have), std::move(buffer),
                                 at + have, n - have);
  }
  co_return co_await pool_read(fd, std::move(path), offset, std::move(buffer), at, n);
}

task<void> write_all(int fd, std::string path, std::int64_t offset, std::string data) {
  // The data moves into each request and back: a request abandoned by a
  // cancelled task still owns it while the thread pool writes, and nothing
  // is copied (a copy per chunk made writing big files slow and doubled
  // write_file's memory).
  std::size_t done_bytes = 0;
  const auto total = data.size();
  while (done_bytes < total) {
    const auto at = offset < 0 ? offset : offset + static_cast<std::int64_t>(done_bytes);
    const auto len = std::min(total - done_bytes, k_max_request);
    auto start = [fd, at, done_bytes, len](uv_loop_t* loop, fs_op& op, uv_fs_cb cb) {
      uv_buf_t buf = uv_buf_init(op.buffer.data() + done_bytes, static_cast<unsigned>(len));
      return uv_fs_write(loop, &op.req, fd, &buf, 1, at, cb);
    };
    auto done = co_await fs_awaiter("write", path, start, std::move(data));
    data = std::move(done.buffer);
    if (done.result == 0) {
      throw_io_error(UV_EIO, "write (no progress)", path);
    }
    done_bytes += static_cast<std::size_t>(done.result);
  }
}

} // namespace
} // namespace simul::detail

namespace simul {

using detail::fs_awaiter;
using detail::fs_op;

file& file::operator=(file&& o) noexcept {
  if (this != &o) {
    if (m_fd >= 0) {
      ::close(m_fd);
    }
    m_fd = std::exchange(o.m_fd, -1);
    m_path = std::move(o.m_path);
    m_position = o.m_position;
    m_append = o.m_append;
  }
  return *this;
}

file::~file() {
  if (m_fd >= 0) {
    ::close(m_fd);
  }
}

int file::checked_fd(const char* what) const {
  if (m_fd < 0) {
    throw error(std::string("file::") + what + ": the file " + (m_path.empty() ? "" : m_path + " ") + "is closed");
  }
  return m_fd;
}

task<std::string> file::read(std::size_t n) {
  const int fd = checked_fd("read");
  auto out = co_await detail::read_append(fd, m_path, static_cast<std::int64_t>(m_position), {}, n);
  m_position += out.size();
  co_return out;
}

task<std::string> file::read_all() {
  // Like Python's FileIO.readall: the size says how much room to reserve
  // and how much to ask for, and reading goes on to the end even if the
  // file grows meanwhile. The requests are of at most 8 MiB, so the loop
  // thread never zero-fills more than that at once.
  constexpr std::size_t k_min_request = 64 * 1024;
  constexpr std::size_t k_largest_request = 8 * 1024 * 1024;
  (void)checked_fd("read_all");
  const auto size = (co_await stat()).size;
  const int fd = checked_fd("read_all");
  std::string out;
  // Room for the rest and for the request that finds the end: growing the
  // string for that last request would copy everything read.
  out.reserve((size > m_position ? static_cast<std::size_t>(size - m_position) : 0) + k_min_request);
  while (true) {
    const auto at = m_position + out.size();
    const auto left = size > at ? static_cast<std::size_t>(size - at) : 0;
    const auto before = out.size();
    out = co_await detail::read_append(fd, m_path, static_cast<std::int64_t>(at), std::move(out),
                                       std::clamp(left, k_min_request, k_largest_request));
    if (out.size() == before) {
      break;
    }
  }
  m_position += out.size();
  co_return out;
}

task<void> file::write(std::string data) {
  const int fd = checked_fd("write");
  const auto size = data.size();
  co_await detail::write_all(fd, m_path, m_append ? -1 : static_cast<std::int64_t>(m_position), std::move(data));
  m_position += size;
}

task<std::string> file::read_at(std::uint64_t offset, std::size_t n) {
  const int fd = checked_fd("read_at");
  co_return co_await detail::read_append(fd, m_path, static_cast<std::int64_t>(offset), {}, n);
}

task<void> file::write_at(std::uint64_t offset, std::string data) {
  const int fd = checked_fd("write_at");
  co_await detail::write_all(fd, m_path, static_cast<std::int64_t>(offset), std::move(data));
}

task<void> file::sync() {
  const int fd = checked_fd("sync");
  auto start = [fd](uv_loop_t* loop, fs_op& op, uv_fs_cb cb) { return uv_fs_fsync(loop, &op.req, fd, cb); };
  co_await fs_awaiter("fsync", m_path, start);
}

task<file_stat> file::stat() {
  const int fd = checked_fd("stat");
  auto start = [fd](uv_loop_t* loop, fs_op& op, uv_fs_cb cb) { return uv_fs_fstat(loop, &op.req, fd, cb); };
  auto done = co_await fs_awaiter("fstat", m_path, start);
  co_return detail::to_stat(done.stat);
}

task<void> file::close() {
  if (m_fd < 0) {
    co_return;
  }
  const int fd = std::exchange(m_fd, -1); // closed once, even if this is cancelled
  auto start = [fd](uv_loop_t* loop, fs_op& op, uv_fs_cb cb) { return uv_fs_close(loop, &op.req, fd, cb); };
  co_await fs_awaiter("close", m_path, start);
}

task<file> open_file(std::string path, std::string mode, int permissions) {
  const int flags = detail::parse_mode(mode);
  auto start = [&path, flags, permissions](uv_loop_t* loop, fs_op& op, uv_fs_cb cb) {
    return uv_fs_open(loop, &op.req, path.c_str(), flags, permissions, cb);
  };
  auto done = co_await fs_awaiter("open", path, start);
  co_return file(static_cast<int>(done.result), path, (flags & O_APPEND) != 0);
}

task<std::string> read_file(std::string path) {
  auto f = co_await open_file(path, "r");
  auto data = co_await f.read_all();
  co_await f.close();
  co_return data;
}

task<void> write_file(std::string path, std::string data) {
  auto f = co_await open_file(path, "w");
  co_await f.write(std::move(data));
  co_await f.close();
}

task<file_stat> stat_file(std::string path) {
  auto start = [&path](uv_loop_t* loop, fs_op& op, uv_fs_cb cb) { return uv_fs_stat(loop, &op.req, path.c_str(), cb); };
  auto done = co_await fs_awaiter("stat", path, start);
  co_return detail::to_stat(done.stat);
}

task<void> remove_file(std::string path) {
  auto start = [&path](uv_loop_t* loop, fs_op& op, uv_fs_cb cb) {
    return uv_fs_unlink(loop, &op.req, path.c_str(), cb);
  };
  co_await fs_awaiter("remove", path, start);
}

} // namespace simul
