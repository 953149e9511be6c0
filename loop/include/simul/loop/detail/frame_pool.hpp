#pragma once

// The loop's small-block pool: coroutine frames of simul::task (with the
// scheduled task's state in front, task.hpp) and the chunks of the loop's
// ready queue come from here instead of the global allocator.
//
// A million short tasks are a million small blocks. glibc's malloc serves
// them, but it hands the freed heap back to the kernel between bursts and
// sorts freed chunks lazily, so a burst of tasks spends most of its time in
// page faults and in malloc's bins. The pool keeps per-thread free lists of
// 16-byte size classes up to 1 KiB, carved from slabs it maps itself
// (pre-faulted, 64 KiB doubling to 4 MiB; those of 2 MiB and more aligned
// and advised as transparent huge pages); larger blocks go to ::operator new.
//
// Cost: memory the pool took is kept for reuse, never returned to the system,
// so a process keeps the peak of its live tasks' frames (about 100-300 bytes a
// task). A thread's free lists pass to a shared spare list when it exits.
// Under AddressSanitizer the pool is off (blocks come from ::operator new) so
// use-after-free of a frame is still caught.
//
// Thread-safety: any thread; a block may be freed on another thread than the
// one that allocated it; fork() is safe (the spare list's lock is held
// across it). Lifetime: blocks stay valid until deallocated.

#include <cstddef>

namespace simul::detail {

/// A block of at least `size` bytes, 16-byte aligned. Throws std::bad_alloc.
void* pool_allocate(std::size_t size);
/// Returns a block from pool_allocate(size), with the same `size`.
void pool_deallocate(void* block, std::size_t size) noexcept;

} // namespace simul::detail
