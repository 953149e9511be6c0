#pragma once

// The hook that lets `simul::run` turn Ctrl-C into cancellation of its main
// task (see <simul/loop/io/signals.hpp>). Internal.
//
// Thread-safety: the thread running the loop. Lifetime: the scope must end
// before the loop is destroyed (it may end before or after `close()`).

namespace simul {
class event_loop;
} // namespace simul

namespace simul::detail {

class task_base;

/// While alive, the first SIGINT cancels `main`; a second one kills the
/// process the default way. Does nothing if SIGINT does not have its default
/// action when the scope begins (the program handles it itself).
class sigint_scope {
 public:
  sigint_scope(event_loop& loop, task_base& main);
  sigint_scope(const sigint_scope&) = delete;
  sigint_scope& operator=(const sigint_scope&) = delete;
  ~sigint_scope();

 private:
  event_loop* m_loop;
  void* m_handle = nullptr;
};

} // namespace simul::detail
