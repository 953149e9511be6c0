#pragma once

// Definitions of event_loop.hpp's templates that need task handles:
// create_task, run_until_complete, submit, and the free create_task / run.
//
// Included at the bottom of <simul/loop/event_loop.hpp>, after every
// declaration it needs (as Asio's impl/ files are); include that header,
// not this one. Thread-safety and lifetime: see event_loop.hpp.

#include <simul/loop/detail/sigint.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

namespace simul {

// ---- event_loop members that need tasks ----

template <class T>
task_handle<T> event_loop::create_task(task<T> t, create_task_options options, detail::source_location where) {
  check_can_schedule("create_task");
  auto frame = t.release();
  if (!frame) {
    throw error("create_task: the task is empty (moved from, or already scheduled)");
  }
  const bool eager = starts_eagerly(options.eager);
  auto* state = detail::task_state<T>::adopt(*this, frame, eager);
  task_handle<T> out(state);
  state->set_where(where);
  if (auto ctx = detail::current_context()) {
    state->context_slot() = std::move(ctx); // a copy of its creator's context (asyncio)
  }
  if (!options.name.empty()) {
    out.set_name(std::string(options.name));
  }
  if (eager) {
    state->run_first_step_now(); // may finish the task: `out` keeps it
  }
  return out;
}

template <class T, std::convertible_to<std::string> Name>
task_handle<T> event_loop::create_task(task<T> t, Name&& name, detail::source_location where) {
  if constexpr (std::is_convertible_v<Name, std::string_view>) {
    return create_task(std::move(t), create_task_options{.name = std::string_view(name)}, where);
  } else {
    const std::string copy(std::forward<Name>(name));
    return create_task(std::move(t), create_task_options{.name = copy}, where);
  }
}

template <class T>
T event_loop::run_until_complete(task<T> t, detail::source_location where) {
  return run_until_complete(create_task(std::move(t), create_task_options{}, where));
}

template <class T>
T event_loop::run_until_complete(task_handle<T> t) {
  if (&t.base().loop() != this) {
    throw error("run_until_complete: the task belongs to another loop");
  }
  run_until_task_done(t.base());
  return detail::take_result(std::move(t)); // moved if `t` was the last handle
}

namespace detail {
/// simul::run's way to the loop without taking the result.
struct run_access {
  static void until_done(event_loop& loop, task_base& t) { loop.run_until_task_done(t); }
};
} // namespace detail

template <class F, class... Args>
requires std::invocable<std::decay_t<F>, std::decay_t<Args>...> future<submit_result_t<F, Args...>>
event_loop::submit(F&& f, Args&&... args) {
  using R = submit_result_t<F, Args...>;
  promise<R> p;
  auto result = p.get_future();
  post_submitted([p = std::move(p), fn = std::decay_t<F>(std::forward<F>(f)),
                  tup = std::make_tuple(std::decay_t<Args>(std::forward<Args>(args))...)]() mutable {
    if (!p.set_running_or_notify_cancel()) {
      return;
    }
    std::apply([&](auto&... a) { detail::fulfil(p, fn, std::move(a)...); }, tup);
  });
  return result;
}

// ---- free functions ----

template <class T>
task_handle<T> create_task(task<T> t, create_task_options options, detail::source_location where) {
  return detail::running_loop_checked("create_task").create_task(std::move(t), options, where);
}

template <class T, std::convertible_to<std::string> Name>
task_handle<T> create_task(task<T> t, Name&& name, detail::source_location where) {
  return detail::running_loop_checked("create_task").create_task(std::move(t), std::forward<Name>(name), where);
}

template <class T>
T run(task<T> main, bool debug, detail::source_location where) {
  if (detail::running_loop_or_null() != nullptr) {
    throw error("simul::run cannot be called while an event loop is running on this thread");
  }
  event_loop loop;
  if (debug) {
    loop.set_debug(true);
  }
  auto main_task = loop.create_task(std::move(main), create_task_options{}, where);
  {
    detail::sigint_scope interrupt(loop, main_task.base()); // Ctrl-C cancels the main task (loop I/O)
    detail::run_access::until_done(loop, main_task.base());
  }
  if constexpr (std::is_void_v<T>) {
    main_task.result();
    loop.close();
  } else {
    T result = detail::take_result(std::move(main_task)); // the last handle: moved, not copied
    loop.close();
    return result;
  }
}

} // namespace simul
