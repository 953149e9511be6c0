// A program outside simul that uses every module: a coroutine on the loop
// awaits a process pool's result and a blocking call on a thread (to_thread),
// and a thread pool maps over a vector. Built by the consumer projects to
// prove that the installed and the embedded packages link all of them.
#include <simul/loop.hpp>
#include <simul/procpool.hpp>
#include <simul/threadpool.hpp>

#include <iostream>
#include <vector>

namespace {

int square(int x) { return x * x; }

simul::task<int> combine(simul::process_pool& procs) {
  const int remote = co_await procs.submit(square, 6);
  const int threaded = co_await simul::to_thread(square, 2);
  co_return remote + threaded;
}

} // namespace

int main() {
  simul::process_pool procs({.workers = 1});
  simul::thread_pool threads({.workers = 2});
  const auto squares = threads.map(square, std::vector<int>{1, 2, 3});
  const int combined = simul::run(combine(procs));
  std::cout << "consumer_modules: " << combined << " " << squares[2] << "\n";
  return combined == 40 && squares[2] == 9 ? 0 : 1;
}
