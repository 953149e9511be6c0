#pragma once

// The loop's own errors (the loop also throws core's: simul::error,
// cancelled_error, timeout_error, from <simul/core/error.hpp>).
//
// Thread-safety: exception types, any thread.

#include <simul/core/error.hpp>

#include <string>

namespace simul {

/// An operation on a task or future in the wrong state (asyncio.InvalidStateError),
/// such as asking for the result of a task that is not done.
class invalid_state_error : public error {
 public:
  explicit invalid_state_error(const std::string& message) : error(message) {}
};

} // namespace simul
