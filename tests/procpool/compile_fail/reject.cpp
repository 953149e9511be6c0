// Each CASE is a task the process pool must refuse at compile time, with a
// static_assert that says why. CASE 0 is the control: it must compile.

#include <simul/procpool.hpp>

#include <string>

namespace {
int takes_int(int x) { return x; }
int takes_ref(int& x) { return ++x; }
int takes_ptr(const int* p) { return *p; }
int* gives_ptr(int) { return nullptr; }
struct opaque {
  opaque() = default;
  opaque(const opaque&) {} // not trivially copyable, no serialize()
  int x = 0;
};
int takes_opaque(opaque o) { return o.x; }
opaque gives_opaque(int) { return {}; }
int takes_string(std::string s) { return static_cast<int>(s.size()); }
} // namespace

int main() {
  simul::process_pool procs({.workers = 1});
  [[maybe_unused]] int local = 3;
#if CASE == 0
  (void)procs.submit(takes_int, 1);
  (void)procs.submit([](int a) { return a; }, 2);
  (void)procs.submit(takes_string, std::string("ok"));
#elif CASE == 1 // a capture
  (void)procs.submit([local](int a) { return a + local; }, 1);
#elif CASE == 2 // a reference parameter
  (void)procs.submit(takes_ref, local);
#elif CASE == 3 // a raw pointer argument
  (void)procs.submit(takes_ptr, &local);
#elif CASE == 4 // a string literal is a pointer too
  (void)procs.submit(takes_string, "literal");
#elif CASE == 5 // an argument type with no way across
  (void)procs.submit(takes_opaque, opaque{});
#elif CASE == 6 // a result type with no way across
  (void)procs.submit(gives_opaque, 1);
#elif CASE == 7 // a raw pointer result
  (void)procs.submit(gives_ptr, 1);
#elif CASE == 8 // a capturing lambda in map
  (void)procs.map([local](int a) { return a + local; }, std::vector<int>{1});
#endif
}
