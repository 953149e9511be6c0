// concurrent.futures in C++: submit work to a thread pool, collect results as
// they complete, then do the same with map and parallel_for.
//
//   main thread            worker 0             worker 1
//   submit(count, text0) ─▶ count(text0) ──┐
//   submit(count, text1) ──────────────────┼─▶ count(text1)
//   submit(count, text2) ─▶ count(text2)   │        │
//   as_completed(...)  ◀── results in the order they finish
//   map(...)           ◀── results in input order
//
// The program checks its own answers and prints "all checks passed" last.

#include <simul/threadpool.hpp>

#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

namespace {

int count_words(const std::string& text) {
  std::istringstream in(text);
  int words = 0;
  for (std::string word; in >> word;) {
    ++words;
  }
  return words;
}

void check(bool ok, const char* what) {
  if (!ok) {
    std::printf("check failed: %s\n", what);
    std::exit(1);
  }
}

} // namespace

int main() {
  const std::vector<std::string> texts = {
      "the quick brown fox",
      "jumps over the lazy dog",
      "concurrency is not parallelism",
      "a b c d e f g h",
  };

  simul::thread_pool pool({.workers = 2, .name = "words"});

  // 1. submit + as_completed, like concurrent.futures.
  std::vector<simul::future<int>> futures;
  for (const auto& text : texts) {
    futures.push_back(pool.submit(count_words, text));
  }
  int total = 0;
  for (auto& f : simul::as_completed(futures)) {
    total += f.get();
  }
  std::printf("words counted as they completed: %d\n", total);
  check(total == 4 + 5 + 4 + 8, "total words");

  // 2. map: the same work, results in input order.
  std::vector<int> counts = pool.map(count_words, texts);
  for (std::size_t i = 0; i < texts.size(); ++i) {
    std::printf("  \"%s\" -> %d\n", texts[i].c_str(), counts[i]);
  }
  check(counts == std::vector<int>{4, 5, 4, 8}, "map order");

  // 3. A failing task: the exception arrives through its future.
  auto failing = pool.submit([]() -> int { throw std::runtime_error("no such file"); });
  try {
    (void)failing.get();
    check(false, "the failure should have been rethrown");
  } catch (const std::runtime_error& e) {
    std::printf("failure delivered: %s\n", e.what());
  }

  // 4. parallel_for over indices.
  std::vector<long> squares(1000);
  pool.parallel_for(0, 1000, [&squares](int i) { squares[i] = static_cast<long>(i) * i; });
  const long sum = std::accumulate(squares.begin(), squares.end(), 0L);
  std::printf("sum of squares below 1000: %ld\n", sum);
  check(sum == 332'833'500L, "sum of squares");

  pool.wait_idle();
  const auto stats = pool.stats();
  std::printf("tasks completed: %llu, failed: %llu\n", static_cast<unsigned long long>(stats.completed),
              static_cast<unsigned long long>(stats.failed));
  check(stats.failed == 1, "one failure counted");
  std::printf("all checks passed\n");
}
