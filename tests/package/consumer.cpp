// A program outside simul that uses the core names; built by both consumer
// projects to prove the package works for real users.
#include <simul/core.hpp>

#include <iostream>
#include <thread>
#include <vector>

int main() {
  simul::promise<int> p;
  auto f = p.get_future().then([](int v) { return v + 1; });
  std::thread producer([&p] { p.set_value(41); });
  const int answer = f.get();
  producer.join();

  simul::inline_executor ex;
  static_assert(simul::executor<simul::inline_executor>);
  std::vector<int> items{1, 2, 3};
  const auto squares = simul::map(ex, [](int x) { return x * x; }, items, {.chunksize = 2});
  std::vector<simul::future<int>> futures;
  futures.push_back(ex.submit([] { return 1; }));
  auto [done, not_done] = simul::wait(futures, simul::return_when::all_completed);
  int total = 0;
  for (auto& g : simul::as_completed(futures)) {
    total += g.get();
  }
  std::cout << "consumer: " << answer << " " << squares[2] << " " << done.size() << not_done.size() << " " << total
            << "\n";
  return answer == 42 && squares[2] == 9 && total == 1 ? 0 : 1;
}
