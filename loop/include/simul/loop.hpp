#pragma once

// simul::loop: an asyncio-style event loop on libuv, for callbacks and
// coroutines. See docs/loop.md for the guide.
//
// - <simul/loop/event_loop.hpp>   event_loop, handle, get_running_loop
// - <simul/loop/task.hpp>         task<T>, the coroutine type
// - <simul/loop/task_handle.hpp>  create_task, task_handle<T>, run, current_task, all_tasks
// - <simul/loop/sleep.hpp>        sleep, yield_now
// - <simul/loop/gather.hpp>       gather, return_exceptions, outcome
// - <simul/loop/wait.hpp>         wait, wait_for, as_completed, shield
// - <simul/loop/timeout.hpp>      timeout, timeout_at (deadline scopes)
// - <simul/loop/task_group.hpp>   task_group, with_task_group, exception_group
// - <simul/loop/sync.hpp>         lock, event, condition, semaphore, bounded_semaphore, barrier
// - <simul/loop/queue.hpp>        queue, priority_queue, lifo_queue
// - <simul/loop/async_generator.hpp> async_generator, async_for
// - <simul/loop/fd_watch.hpp>    add_reader/add_writer's rules, wait_readable, wait_writable
// - <simul/loop/bridge.hpp>       co_await simul::future, run_coroutine_threadsafe
// - <simul/loop/context_var.hpp>  context_var (task-local values, asyncio's contextvars)
//
// libuv is linked privately: none of these headers includes <uv.h>.

#include <simul/core.hpp>
#include <simul/loop/async_generator.hpp>
#include <simul/loop/bridge.hpp>
#include <simul/loop/context_var.hpp>
#include <simul/loop/event_loop.hpp>
#include <simul/loop/fd_watch.hpp>
#include <simul/loop/format_tasks.hpp>
#include <simul/loop/gather.hpp>
#include <simul/loop/io.hpp>
#include <simul/loop/queue.hpp>
#include <simul/loop/sleep.hpp>
#include <simul/loop/sync.hpp>
#include <simul/loop/task.hpp>
#include <simul/loop/task_group.hpp>
#include <simul/loop/task_handle.hpp>
#include <simul/loop/timeout.hpp>
#include <simul/loop/to_thread.hpp>
#include <simul/loop/wait.hpp>
