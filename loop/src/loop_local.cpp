// Per-loop objects (<simul/loop/detail/loop_local.hpp>): a small table in the
// loop, emptied by close() (event_loop.cpp, destroy_loop_locals).

#include "loop_internal.hpp"

namespace simul::detail {

loop_local_base* loop_local_find(event_loop& loop, const std::type_info& key) noexcept {
  for (auto& slot : impl_of(loop).locals) {
    if (*slot.key == key) {
      return slot.value.get();
    }
  }
  return nullptr;
}

loop_local_base& loop_local_store(event_loop& loop, const std::type_info& key, std::unique_ptr<loop_local_base> value) {
  auto& impl = impl_of(loop);
  if (impl.closed || impl.locals_closing) {
    throw error("the event loop is closed (or closing): it keeps no new per-loop object");
  }
  impl.locals.push_back(loop_local_slot{&key, std::move(value)});
  return *impl.locals.back().value;
}

} // namespace simul::detail
