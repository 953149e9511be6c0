#pragma once

// Unix signals on the event loop (asyncio's loop.add_signal_handler).
//
// `add_signal_handler(SIGUSR1, f)` makes the loop call `f()` on its own
// thread, as an ordinary callback, each time the process receives SIGUSR1
// (several deliveries close together may be coalesced by the system). One
// handler per signal and loop: adding again replaces it. Exceptions from `f`
// go to the loop's exception handler. SIGKILL and SIGSTOP cannot be handled
// (`simul::error`). While at least one loop handles a signal, libuv owns its
// disposition; removing the last handler restores the default action.
//
// `simul::run(main)` installs a SIGINT handler for the duration of the run
// when SIGINT has its default action: Ctrl-C cancels the main task (its
// `co_await` throws `cancelled_error`, the frame unwinds, `run` rethrows), as
// asyncio.run does; a second Ctrl-C while it unwinds kills the process the
// default way.
//
// Thread-safety: loop thread only. Lifetime: a handler lives until it is
// removed or replaced, or its loop closes: `close()` destroys the callbacks
// left installed.

#include <functional>

namespace simul {

class event_loop;

/// Calls `callback()` on `loop` whenever signal `sig` arrives; replaces an
/// earlier handler of `sig` on that loop. Throws `simul::error` for SIGKILL,
/// SIGSTOP or an invalid signal number, or a closed loop.
void add_signal_handler(event_loop& loop, int sig, std::function<void()> callback);
/// Same, on the loop running on this thread.
void add_signal_handler(int sig, std::function<void()> callback);
/// Removes the handler of `sig` on `loop`: true if there was one.
bool remove_signal_handler(event_loop& loop, int sig);
/// Same, on the loop running on this thread.
bool remove_signal_handler(int sig);

} // namespace simul
