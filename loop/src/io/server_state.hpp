#pragma once

// A server's state (<simul/loop/io/server.hpp>): its listeners, the
// accepting, its handler tasks and who holds it. Private to loop/src/io:
// server.cpp starts servers and answers `server`'s calls; server_state.cpp
// accepts and runs the handlers.
//
// Thread-safety: loop thread only. Lifetime: counted (see acquire/release);
// the state deletes itself once nobody holds it and its listeners are closed.

#include "io/stream_state.hpp"

#include <simul/loop/io/server.hpp>
#include <simul/loop/task_handle.hpp>

#include <sys/socket.h>
#include <sys/types.h>

#include <cstddef>
#include <list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace simul::detail {

class server_state {
 public:
  server_state(event_loop& loop, stream_state::kind k, connection_handler handler, server_options options)
      : m_loop(&loop), m_kind(k), m_handler(std::move(handler)), m_options(options) {
    if (options.ssl != nullptr) {
      m_ssl = *options.ssl; // the server's own reference
      m_options.ssl = &*m_ssl;
    }
  }
  server_state(const server_state&) = delete;
  server_state& operator=(const server_state&) = delete;

  /// A new listening handle (one per bound address); the server owns it.
  uv_stream_t* add_listener();
  /// Closes and forgets the newest listener (its address could not be bound).
  void drop_last_listener() noexcept;
  [[nodiscard]] std::size_t listener_count() const noexcept { return m_listeners.size(); }
  [[nodiscard]] event_loop& loop() const noexcept { return *m_loop; }

  /// Listens on the newest listener (libuv reports most bind errors here).
  /// The server accepts by itself (not uv_listen): libuv closes connections
  /// it cannot accept for lack of descriptors, in silence.
  int listen_last(int backlog);
  void set_serving() noexcept { m_serving = true; }

  /// Stops listening: closes the watchers and listeners. Idempotent.
  void close() noexcept;
  /// Cancels every running handler task.
  void close_clients();

  [[nodiscard]] bool serving() const noexcept { return m_serving; }
  [[nodiscard]] bool listener_closed() const noexcept { return !m_listener_alive; }
  [[nodiscard]] bool all_done() const noexcept { return !m_listener_alive && m_handlers.empty(); }
  [[nodiscard]] std::size_t active() const noexcept { return m_handlers.size(); }
  wait_list& closed_waiters() noexcept { return m_closed_waiters; }
  wait_list& done_waiters() noexcept { return m_done_waiters; }

  /// The port the listener `i` is bound to (TCP), 0 if unknown.
  int port_of(std::size_t i) const;
  int port() const { return m_port; }
  std::string sockname() const { return m_name; }
  /// Every bound address ("host:port" each; the path for a Unix server).
  std::vector<std::string> socknames() const;
  void set_name(std::string name, int port) {
    m_name = std::move(name);
    m_port = port;
  }
  /// The socket file this server made: removed when it closes, and only if
  /// the file at the path is still that one (same device and inode).
  void set_unix_path(std::string path);

  // Ownership: users are `server` objects; internal references are handler
  // tasks and awaitables; the listener handle counts while open.
  void acquire() noexcept { ++m_users; }
  void release() noexcept;
  void acquire_internal() noexcept { ++m_internal; }
  void release_internal() noexcept {
    --m_internal;
    maybe_delete();
  }

  /// Handler tasks: a slot for each, erased when it ends.
  using slot = std::list<basic_task_handle>::iterator;
  slot add_handler_slot() { return m_handlers.emplace(m_handlers.end()); }
  void handler_done(slot s) noexcept;
  const connection_handler& handler() const noexcept { return m_handler; }
  const server_options& options() const noexcept { return m_options; }
  void count_handshake_failure() noexcept { ++m_handshake_failures; }
  [[nodiscard]] std::size_t accept_failures() const noexcept { return m_accept_failures; }
  [[nodiscard]] std::size_t handshake_failures() const noexcept { return m_handshake_failures; }

 private:
  ~server_state() = default;
  /// Frees the state once nobody holds it and the listeners are closed.
  void maybe_delete() noexcept;
  /// The address listener `i` is bound to (TCP while listening).
  bool local_address(std::size_t i, sockaddr_storage& addr) const noexcept;
  static void delete_listener(stream_state::kind k, uv_stream_t* h) noexcept;
  /// Frees the listeners' memory (after their close, or the loop's).
  void free_listeners() noexcept;
  static void on_listener_close(uv_handle_t* h) noexcept;
  /// The listeners are closed: removes the socket file, wakes the waiters.
  void listeners_gone() noexcept;

  static void on_readable(uv_poll_t* poll, int status, int events) noexcept;
  static void on_retry(uv_timer_t* timer) noexcept;
  /// Out of descriptors or memory: reports it (once until an accept
  /// succeeds again), counts it, and stops accepting for a moment; the
  /// clients wait in the listen queue meanwhile, as asyncio's do.
  void pause_accepting(int code) noexcept;
  /// Serves a connection accepted on descriptor `fd` (which it owns now).
  void serve(int fd) noexcept;

  event_loop* m_loop;
  stream_state::kind m_kind;
  connection_handler m_handler;
  server_options m_options;
  std::optional<ssl_context> m_ssl;
  std::vector<uv_stream_t*> m_listeners;
  std::vector<uv_poll_t*> m_polls;   // one per listener: accepting
  uv_timer_t* m_retry = nullptr;     // resumes accepting after a pause
  std::size_t m_accept_failures = 0; // accepts that failed for lack of descriptors or memory
  bool m_accept_trouble = false;     // reported, and no accept succeeded since
  std::size_t m_closing = 0;         // listeners whose close callback is still due
  std::string m_name;
  std::string m_unix_path;
  std::pair<dev_t, ino_t> m_unix_file{};
  int m_port = 0;
  std::size_t m_handshake_failures = 0;
  unsigned m_users = 0;
  unsigned m_internal = 0;
  bool m_listener_alive = true;
  bool m_close_started = false;
  bool m_serving = false;
  std::list<basic_task_handle> m_handlers;
  wait_list m_closed_waiters;
  wait_list m_done_waiters;
};

} // namespace simul::detail
