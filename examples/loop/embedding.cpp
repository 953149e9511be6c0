// embedding: drive the loop from a host program's own while loop.
//
// A GUI or game loop owns the thread; simul's loop is pumped from it. The
// host polls the loop's backend descriptor (epoll) with the loop's own
// timeout, then runs one non-blocking iteration. Work can also come from
// other threads through call_soon_threadsafe, which wakes the descriptor.
//
//   host:  while (running) { poll(backend_fd, backend_timeout); run_nowait(); draw_frame(); }
//   loop:  timers, tasks and thread-safe callbacks advance inside run_nowait

#include <simul/loop.hpp>

#include <chrono>
#include <iostream>
#include <poll.h>
#include <thread>

using namespace std::chrono_literals;

namespace {

simul::task<int> background_job() {
  int total = 0;
  for (int i = 1; i <= 3; ++i) {
    co_await simul::sleep(2ms);
    total += i;
  }
  co_return total;
}

} // namespace

int main() {
  simul::event_loop loop;
  auto job = loop.create_task(background_job());
  bool message_seen = false;
  std::thread other([&] { loop.call_soon_threadsafe([&] { message_seen = true; }); });

  int frames = 0;
  while (!job.done() || !message_seen) {
    pollfd p{loop.backend_fd(), POLLIN, 0};
    ::poll(&p, 1, loop.backend_timeout()); // the host would also watch its own fds here
    loop.run_nowait();
    ++frames; // draw_frame()
  }
  other.join();
  std::cout << "job result: " << job.result() << " after " << (frames > 0 ? "some" : "no") << " host frames\n";
  std::cout << "message from another thread: " << std::boolalpha << message_seen << "\n";
  loop.close();
}
