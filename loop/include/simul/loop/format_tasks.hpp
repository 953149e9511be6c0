#pragma once

// simul::format_tasks / print_tasks: what a program is waiting on.
//
//   loop.add_signal_handler(SIGUSR1, [&loop] { simul::print_tasks(loop); });  // see docs/loop.md
//
// Lists every pending task of a loop as a tree of await chains, in the
// spirit of Python's `python -m asyncio pstree`: a task nobody awaits is a
// root; under it, what it awaits — another task (shown nested, with what
// that one awaits), a gather or wait over several tasks (each nested), a
// sleep with the time left, a future from a pool, a lock, event, semaphore,
// condition, barrier or queue, a stream read or write, a DNS lookup or a
// connect, a file operation, a descriptor, a task group's join. Every task
// line carries the task's id, its name and where it was created:
//
//   Task #1 'main' (created at server.cpp:40 in run)
//     awaits gather of 2 tasks
//       Task #2 'fetch-0' (created at server.cpp:31 in main_task)
//         awaits a sleep, 12.3 ms left
//       Task #3 'fetch-1' (created at server.cpp:31 in main_task)
//         awaits a simul::future (a pool's result or a promise)
//
// A task that has not started says so; one queued to run says "ready to
// run"; the task calling format_tasks is "running (the caller)".
//
// Thread-safety: call on the loop's thread (from a task, a callback, a
// signal handler registered with the loop, or between runs); from another
// thread while the loop runs it throws `simul::error` (use
// `call_soon_threadsafe`). Lifetime: the text is a snapshot.

#include <simul/loop/event_loop.hpp>

#include <cstdio>
#include <string>

namespace simul {

/// The pending tasks of `loop` as a tree of await chains (see the file
/// comment); "No pending tasks.\n" when there are none.
[[nodiscard]] std::string format_tasks(event_loop& loop);

/// Writes `format_tasks(loop)` to `out` (stderr by default).
void print_tasks(event_loop& loop, std::FILE* out = stderr);

namespace detail {
class task_base;
/// One task's line and what it awaits, indented by `indent` spaces (the
/// debug-mode report of tasks destroyed while pending uses it).
std::string format_task(const task_base& task, int indent = 0);
} // namespace detail

} // namespace simul
