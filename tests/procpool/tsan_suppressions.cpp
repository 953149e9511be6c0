// The one ThreadSanitizer suppression of the procpool tests, and why.
//
// A task's exception reaches the consumer as a std::exception_ptr stored in
// the future's shared state. When the pool's I/O thread drops the last
// reference to that state after the consumer has already caught and read the
// exception, the I/O thread frees the exception object. The two threads are
// ordered by the exception's reference count, which libstdc++ updates with
// atomics inside libstdc++.so — code TSan does not instrument — so TSan sees
// the consumer's reads and the I/O thread's free as unordered. The report is
// always inside exception_ptr::_M_release; nothing of simul's is suppressed.

#if defined(__SANITIZE_THREAD__)
extern "C" const char* __tsan_default_suppressions() { // NOLINT: a name TSan looks up
  return "race:std::__exception_ptr::exception_ptr::_M_release\n";
}
#endif
