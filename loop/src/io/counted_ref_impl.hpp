#pragma once

// The hooks of detail::counted_ref (<simul/loop/detail/counted_ref.hpp>),
// written once for every state: they call the state's `acquire()` and
// `release()`. A state's source includes this and instantiates the template
// beside the state's definition:
//
//   template class simul::detail::counted_ref<stream_state>;

#include <simul/loop/detail/counted_ref.hpp>

namespace simul::detail {

template <class State>
void counted_ref<State>::acquire(State* s) noexcept {
  s->acquire();
}

template <class State>
void counted_ref<State>::release(State* s) noexcept {
  s->release();
}

} // namespace simul::detail
