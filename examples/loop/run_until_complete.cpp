// run_until_complete: drive a loop by hand instead of simul::run.
//
// A new loop, two background tasks, all_tasks() to look at what is
// scheduled, run_until_complete on the main coroutine, then close(), which
// cancels the background task that is still sleeping and lets it unwind.
//
//   loop.create_task(worker A)  loop.create_task(sleeper B)
//   run_until_complete(main):  main awaits A ---- A done -> main returns
//   close():                   B is cancelled, unwinds, loop freed

#include <simul/loop.hpp>

#include <chrono>
#include <iostream>

namespace {

simul::task<int> worker() {
  co_await simul::sleep(std::chrono::milliseconds(2));
  co_return 42;
}

simul::task<void> sleeper() {
  try {
    co_await simul::sleep(std::chrono::hours(1));
  } catch (const simul::cancelled_error& e) {
    std::cout << "sleeper cancelled: " << e.what() << "\n";
    throw;
  }
}

simul::task<int> main_task(simul::task_handle<int> a) {
  std::cout << "tasks scheduled: " << simul::all_tasks().size() << "\n";
  co_return co_await a + 1;
}

} // namespace

int main() {
  simul::event_loop loop;
  auto a = loop.create_task(worker(), "worker");
  auto b = loop.create_task(sleeper(), "sleeper");
  const int result = loop.run_until_complete(main_task(a));
  std::cout << "result: " << result << "\n";
  std::cout << "still pending: " << simul::all_tasks(loop).size() << " (" << b.get_name() << ")\n";
  loop.close();
  std::cout << "sleeper cancelled after close: " << std::boolalpha << b.cancelled() << "\n";
}
