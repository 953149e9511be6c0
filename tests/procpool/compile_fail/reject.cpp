// Tasks the process pool must refuse at compile time, each with a
// static_assert that says why. check_rejections.cmake compiles this file
// twice: with CONTROL, where only acceptable tasks remain and it must compile,
// and without, where every line marked "expect:" must be named in an error
// that carries the expected message.

#include <simul/procpool.hpp>

#include <string>
#include <vector>

namespace {
int takes_int(int x) { return x; }
int takes_ref(int& x) { return ++x; }
int takes_ptr(const int* p) { return *p; }
int* gives_ptr(int) { return nullptr; }
struct opaque {
  opaque() = default;
  opaque(const opaque&) {} // not trivially copyable, and no serialize()
  int x = 0;
};
int takes_opaque(opaque o) { return o.x; }
opaque gives_opaque(int) { return {}; }
int takes_string(std::string s) { return static_cast<int>(s.size()); }
} // namespace

int main() {
  simul::process_pool procs({.workers = 1});
  [[maybe_unused]] int local = 3;
  (void)procs.submit(takes_int, 1);
  (void)procs.submit([](int a) { return a; }, 2);
  (void)procs.submit(takes_string, std::string("ok"));
  (void)procs.map(takes_int, std::vector<int>{1});
#ifndef CONTROL
  (void)procs.submit([local](int a) { return a + local; }, 1); // expect: captures cannot cross a process boundary
  (void)procs.submit(takes_ref, local);                        // expect: a reference parameter cannot send changes back
  (void)procs.submit(takes_ptr, &local);       // expect: raw pointer arguments cannot cross a process boundary
  (void)procs.submit(takes_string, "literal"); // expect: std::string instead of const char
  (void)procs.submit(takes_opaque, opaque{});  // expect: an argument type cannot be serialized
  (void)procs.submit(gives_opaque, 1);         // expect: the task's result type cannot be serialized
  (void)procs.submit(gives_ptr, 1);            // expect: a task cannot return a raw pointer
  (void)procs.map([local](int a) { return a + local; }, std::vector<int>{1}); // expect: captures cannot cross
#endif
}
