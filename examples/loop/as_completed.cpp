// as_completed: take results in the order the tasks finish, not the order
// they were started.
//
// Two countdowns run concurrently, each sleeping for the values it counts
// (in units of 10 ms): [3, 2, 1] needs 60 ms, [10, 5, 0] needs 150 ms. The
// long one is started first, yet the first result to arrive is the short
// countdown's: as_completed hands results over in finishing order.
//
//   time (x10 ms) 0    3  5  6        10        15
//   countdown A   3 -- 2 -- 1 -- done
//   countdown B   10 ------------------ 5 ------ 0 done
//   main          as_completed: A's result ........ B's result

#include <simul/loop.hpp>

#include <chrono>
#include <iostream>
#include <string>
#include <vector>

namespace {

simul::task<std::string> countdown(std::string name, std::vector<int> steps) {
  for (int v : steps) {
    std::cout << "countdown " << name << ": " << v << "\n";
    co_await simul::sleep(std::chrono::milliseconds(10 * v));
  }
  co_return "countdown " + name + " finished";
}

simul::task<void> main_task() {
  std::vector<simul::task_handle<std::string>> tasks;
  tasks.push_back(simul::create_task(countdown("[10,5,0]", {10, 5, 0})));
  tasks.push_back(simul::create_task(countdown("[3,2,1]", {3, 2, 1})));
  int n = 1;
  for (auto next : simul::as_completed(tasks)) {
    std::cout << "completed #" << n++ << ": " << co_await next << "\n";
  }
}

} // namespace

int main() { simul::run(main_task()); }
