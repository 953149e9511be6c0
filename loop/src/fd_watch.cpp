// add_reader / add_writer: one uv_poll_t per watched descriptor, its events
// the union of the reader's and the writer's.
//
// The loop has no slot for per-loop I/O state, so the watches live in one
// process-wide table keyed by (libuv loop, descriptor). A loop that closes
// hands each of our poll handles to close_fd_watch_at_loop_close (their
// `data` marks them), which takes the entry out of the table and frees it.

#include "io/io_internal.hpp"
#include "loop_internal.hpp"

#include <simul/loop/fd_watch.hpp>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

namespace simul {

namespace detail {
namespace {

struct fd_watch {
  uv_poll_t handle{}; // first: the handle's address is the watch's
  event_loop* loop = nullptr;
  int fd = -1;
  int events = 0; // what uv_poll_start was given
  // Shared so a callback that replaces or removes itself keeps running.
  std::shared_ptr<std::function<void()>> reader;
  std::shared_ptr<std::function<void()>> writer;
};

/// What `data` of a watch's handle points to, to tell it from other poll handles.
constexpr char k_watch_mark = 0;

struct watch_table {
  std::mutex mutex;
  std::unordered_map<uv_loop_t*, std::unordered_map<int, fd_watch*>> loops;
};

watch_table& table() {
  static auto* t = new watch_table(); // never destroyed: loops may close during exit
  return *t;
}

fd_watch* find_watch(event_loop& loop, int fd) {
  auto& t = table();
  std::lock_guard lock(t.mutex);
  const auto it = t.loops.find(uv_loop(loop));
  if (it == t.loops.end()) {
    return nullptr;
  }
  const auto w = it->second.find(fd);
  return w == it->second.end() ? nullptr : w->second;
}

void erase_watch(uv_loop_t* uv, int fd) noexcept {
  auto& t = table();
  std::lock_guard lock(t.mutex);
  const auto it = t.loops.find(uv);
  if (it == t.loops.end()) {
    return;
  }
  it->second.erase(fd);
  if (it->second.empty()) {
    t.loops.erase(it);
  }
}

void run_callback(fd_watch* w, const std::shared_ptr<std::function<void()>>& callback, const char* kind) {
  auto keep = callback; // the callback may replace or remove itself
  try {
    (*keep)();
  } catch (...) {
    report(*w->loop, std::string("Exception in ") + kind + " callback for file descriptor " + std::to_string(w->fd),
           std::current_exception());
  }
}

void on_poll(uv_poll_t* h, int status, int events) {
  auto* w = reinterpret_cast<fd_watch*>(h);
  if (status < 0) {
    events = UV_READABLE | UV_WRITABLE; // both find the error themselves
  }
  // A callback may remove the watch: the memory stays until the close
  // callback, and a removed watch has no callbacks left.
  if ((events & UV_READABLE) != 0 && w->reader) {
    run_callback(w, w->reader, "reader");
  }
  if ((events & UV_WRITABLE) != 0 && w->writer) {
    run_callback(w, w->writer, "writer");
  }
}

void close_watch(fd_watch* w) noexcept {
  w->reader.reset();
  w->writer.reset();
  uv_poll_stop(&w->handle);
  uv_close(reinterpret_cast<uv_handle_t*>(&w->handle), [](uv_handle_t* h) { delete reinterpret_cast<fd_watch*>(h); });
}

/// Starts, changes or ends the poll after the callbacks changed.
/// Returns the libuv error of uv_poll_start (0 on success).
int update(fd_watch* w) noexcept {
  const int events = (w->reader ? UV_READABLE : 0) | (w->writer ? UV_WRITABLE : 0);
  if (events == 0) {
    erase_watch(w->handle.loop, w->fd);
    close_watch(w);
    return 0;
  }
  if (events == w->events) {
    return 0;
  }
  const int rc = uv_poll_start(&w->handle, events, &on_poll);
  if (rc == 0) {
    w->events = events;
  }
  return rc;
}

void check_call(event_loop& loop, const char* what) {
  auto& impl = impl_of(loop);
  if (impl.running_flag.load(std::memory_order_acquire) &&
      impl.thread.load(std::memory_order_relaxed) != std::this_thread::get_id()) {
    throw error(std::string(what) +
                ": called from a thread other than the loop's while it runs (use call_soon_threadsafe)");
  }
}

void add_watch(event_loop& loop, int fd, std::function<void()> callback, bool writer, const char* what) {
  check_call(loop, what);
  if (loop.is_closed()) {
    throw error(std::string(what) + ": the event loop is closed");
  }
  if (!callback) {
    throw error(std::string(what) + ": the callback is empty");
  }
  if (fd < 0) {
    throw error(std::string(what) + ": invalid file descriptor " + std::to_string(fd));
  }
  auto shared = std::make_shared<std::function<void()>>(std::move(callback));
  fd_watch* w = find_watch(loop, fd);
  const bool fresh = w == nullptr;
  if (fresh) {
    auto owned = std::make_unique<fd_watch>();
    if (const int rc = uv_poll_init(uv_loop(loop), &owned->handle, fd); rc < 0) {
      throw_io_error(rc, what, "file descriptor " + std::to_string(fd));
    }
    w = owned.release();
    w->handle.data = const_cast<char*>(&k_watch_mark);
    w->loop = &loop;
    w->fd = fd;
    auto& t = table();
    std::lock_guard lock(t.mutex);
    t.loops[uv_loop(loop)][fd] = w;
  }
  auto& slot = writer ? w->writer : w->reader;
  auto previous = std::exchange(slot, std::move(shared));
  if (const int rc = update(w); rc < 0) {
    slot = std::move(previous);
    if (fresh) {
      erase_watch(uv_loop(loop), fd);
      close_watch(w);
    }
    throw_io_error(rc, what, "file descriptor " + std::to_string(fd));
  }
}

bool remove_watch(event_loop& loop, int fd, bool writer) noexcept {
  fd_watch* w = find_watch(loop, fd);
  if (w == nullptr) {
    return false;
  }
  auto& slot = writer ? w->writer : w->reader;
  if (!slot) {
    return false;
  }
  slot.reset();
  update(w); // only narrows the events or ends the watch: cannot fail in a way worth reporting
  return true;
}

} // namespace

bool close_fd_watch_at_loop_close(uv_handle_t* poll_handle) noexcept {
  if (poll_handle->data != &k_watch_mark) {
    return false;
  }
  auto* w = reinterpret_cast<fd_watch*>(poll_handle);
  erase_watch(poll_handle->loop, w->fd);
  close_watch(w);
  return true;
}

// ---- the awaitable ----

fd_wait_awaiter::~fd_wait_awaiter() { unregister(); }

void fd_wait_awaiter::unregister() noexcept {
  if (m_registered) {
    m_registered = false;
    remove_watch(*m_loop, m_fd, m_writable);
  }
}

bool fd_wait_awaiter::await_suspend(std::coroutine_handle<> h) {
  const char* what = m_writable ? "wait_writable" : "wait_readable";
  m_loop = &get_running_loop();
  if (auto* w = find_watch(*m_loop, m_fd); w != nullptr && (m_writable ? w->writer : w->reader)) {
    m_error = std::make_exception_ptr(error(std::string(what) + ": file descriptor " + std::to_string(m_fd) +
                                            " already has a " + (m_writable ? "writer" : "reader")));
    return false;
  }
  if (!suspend_on(h)) {
    return false;
  }
  try {
    add_watch(
        *m_loop, m_fd,
        [this] {
          unregister();
          wake();
        },
        m_writable, what);
    m_registered = true;
  } catch (...) {
    m_error = std::current_exception();
    wake();
  }
  return true;
}

void fd_wait_awaiter::await_resume() {
  if (m_task != nullptr) { // null when refused before suspend_on
    check_cancel();
  }
  if (m_error) {
    std::rethrow_exception(m_error);
  }
}

bool fd_wait_awaiter::on_cancel() noexcept {
  if (!m_registered) {
    return false; // woken already
  }
  unregister();
  abort_and_wake();
  return true;
}

} // namespace detail

void event_loop::add_reader(int fd, std::function<void()> callback) {
  detail::add_watch(*this, fd, std::move(callback), false, "add_reader");
}

void event_loop::add_writer(int fd, std::function<void()> callback) {
  detail::add_watch(*this, fd, std::move(callback), true, "add_writer");
}

bool event_loop::remove_reader(int fd) {
  detail::check_call(*this, "remove_reader");
  return detail::remove_watch(*this, fd, false);
}

bool event_loop::remove_writer(int fd) {
  detail::check_call(*this, "remove_writer");
  return detail::remove_watch(*this, fd, true);
}

} // namespace simul
