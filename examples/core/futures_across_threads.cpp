// futures_across_threads: the core task interface on its own, with plain threads.
//
// Ten producer threads each square a number after a short, uneven delay; the
// main thread collects the results as they complete, chains a continuation,
// and shows `wait` with FIRST_COMPLETED and a cancelled future.
//
//   main     ──submit 10 promises──▶ wait(first_completed) ──as_completed──▶ sum ──then──▶ print
//   thread0  ····sleep 9ms····▶ set_value(0)
//   thread9  ▶ set_value(81)                       (later numbers finish first)
//
// Output (the completion order varies from run to run):
//   first finished: 1 of 10
//   got 81  got 64  ...
//   total of squares: 285
//   cancelled before it ran: yes

#include <simul/core.hpp>

#include <chrono>
#include <iostream>
#include <thread>
#include <vector>

int main() {
  using namespace std::chrono_literals;
  std::vector<simul::promise<int>> promises(10);
  std::vector<simul::future<int>> futures;
  for (auto& p : promises) {
    futures.push_back(p.get_future());
  }

  std::vector<std::jthread> producers;
  for (int i = 0; i < 10; ++i) {
    producers.emplace_back([&promises, i] {
      std::this_thread::sleep_for(std::chrono::milliseconds(9 - i));
      promises[i].set_value(i * i);
    });
  }

  auto first = simul::wait(futures, simul::return_when::first_completed);
  std::cout << "first finished: " << first.done.size() << " of " << futures.size() << "\n";

  int total = 0;
  for (auto& f : simul::as_completed(futures, 10s)) {
    const int value = f.get();
    std::cout << "got " << value << "  ";
    total += value;
  }
  std::cout << "\n";

  // A continuation runs on whichever thread completes its source.
  auto report =
      simul::make_ready_future(total).then([](int sum) { return "total of squares: " + std::to_string(sum); });
  std::cout << report.get() << "\n";

  // Work that has not started can be cancelled; its producer sees that and skips it.
  simul::promise<int> never;
  auto pending = never.get_future();
  pending.cancel();
  std::cout << "cancelled before it ran: " << (never.set_running_or_notify_cancel() ? "no" : "yes") << "\n";
}
