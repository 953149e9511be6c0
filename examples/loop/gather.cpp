// gather: run three coroutines concurrently and collect their results in order.
//
// The asyncio classic: each coroutine prints when it starts, sleeps, prints
// when it finishes and returns a string. gather starts all three at once, so
// the program takes as long as the longest sleep (3 units), not the sum (6),
// and the results come back in argument order whatever the finishing order.
// Units are 10 ms (coroutines 1 and 2 start a moment apart, and 1 ms units
// let a slow start reorder their ends); pass --real for seconds, as in the
// Python original.
//
//   time ->   0         1         2         3
//   coro 1    start ------------- finished
//   coro 2    start --- finished
//   coro 3    start ----------------------- finished
//   main      gather(...) ------------------ prints results 1, 2, 3

#include <simul/loop.hpp>

#include <chrono>
#include <cstring>
#include <iostream>
#include <string>

namespace {

std::chrono::milliseconds g_unit{10};

simul::task<std::string> my_coroutine(int id, int delay) {
  std::cout << "Coroutine " << id << " starting\n";
  co_await simul::sleep(delay * g_unit);
  std::cout << "Coroutine " << id << " finished\n";
  co_return "Result from coroutine " + std::to_string(id);
}

simul::task<void> main_task() {
  auto [a, b, c] = co_await simul::gather(my_coroutine(1, 2), my_coroutine(2, 1), my_coroutine(3, 3));
  for (const auto& result : {a, b, c}) {
    std::cout << result << "\n";
  }
}

} // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--real") == 0) {
    g_unit = std::chrono::seconds(1);
  }
  simul::run(main_task());
}
