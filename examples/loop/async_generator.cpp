// async_generator: a coroutine that awaits and yields, consumed lazily.
//
// `ticker` sleeps between values. The first consumer reads three values and
// closes the generator early: aclose makes the pending `co_yield` throw
// `generator_exit`; the generator catches it and runs its asynchronous
// cleanup, then its destructors run. The second consumer reads a short ticker
// to its end with async_for.
//
//   consumer 1:  next -> [sleep] 0   next -> [sleep] 1   next -> [sleep] 2   aclose -> [catch: sleep] (cleanup)
//   consumer 2:  async_for: [sleep] 100  [sleep] 101  end

#include <simul/loop.hpp>

#include <chrono>
#include <iostream>
#include <string>

namespace {

simul::async_generator<int> ticker(std::string name, int start, int count) {
  struct cleanup {
    std::string name;
    ~cleanup() { std::cout << name << ": cleaned up\n"; }
  } guard{name};
  bool closing = false;
  try {
    for (int i = 0; count < 0 || i < count; ++i) {
      co_await simul::sleep(std::chrono::milliseconds(1));
      co_yield start + i;
    }
  } catch (const simul::generator_exit&) {
    closing = true; // C++ allows no co_await inside a handler: clean up after it
  }
  if (closing) {
    co_await simul::sleep(std::chrono::milliseconds(1)); // asynchronous cleanup
    std::cout << name << ": closing\n";
  }
}

simul::task<void> main_task() {
  auto endless = ticker("endless", 0, -1);
  for (int i = 0; i < 3; ++i) {
    auto v = co_await endless.next();
    std::cout << "endless gave " << *v << "\n";
  }
  co_await endless.aclose(); // closed early
  std::cout << "endless closed: " << std::boolalpha << endless.done() << "\n";

  co_await simul::async_for(ticker("short", 100, 2), [](int v) { std::cout << "short gave " << v << "\n"; });
  std::cout << "done\n";
}

} // namespace

int main() { simul::run(main_task()); }
