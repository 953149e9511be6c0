// callbacks_vs_coroutines: the same three timed steps, written twice.
//
// With callbacks, each step schedules the next with call_later and the state
// travels in captures; with a coroutine, the steps are plain sequential code
// with co_await sleep between them. Both run on the same loop, interleaved.
//
//   time (ms) ->  0     1     2     3
//   callbacks     step1 step2 step3
//   coroutine     step1 step2 step3
//                 (both chains advance in the same loop iterations)

#include <simul/loop.hpp>

#include <chrono>
#include <functional>
#include <iostream>

using namespace std::chrono_literals;

namespace {

void callback_steps(simul::event_loop& loop, int step, std::function<void()> done) {
  std::cout << "callbacks: step " << step << "\n";
  if (step == 3) {
    done();
    return;
  }
  loop.call_later(1ms, [&loop, step, done] { callback_steps(loop, step + 1, done); });
}

simul::task<void> coroutine_steps() {
  for (int step = 1; step <= 3; ++step) {
    std::cout << "coroutine: step " << step << "\n";
    if (step < 3) {
      co_await simul::sleep(1ms);
    }
  }
}

} // namespace

int main() {
  simul::event_loop loop;
  bool callbacks_done = false;
  loop.call_soon([&] { callback_steps(loop, 1, [&] { callbacks_done = true; }); });
  loop.run_until_complete(coroutine_steps());
  while (!callbacks_done) {
    loop.run_once();
  }
  std::cout << "both finished\n";
  loop.close();
}
