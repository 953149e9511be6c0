#pragma once

// Hooks for simul's own tests of the process pool (internal): nothing else
// should call them.
//
// Thread-safety: call before making the pool under test, from the thread
// that makes it. Lifetime: a setting stays until it is changed.

#include <string>

namespace simul::detail {

/// Makes the next pools with `start_method::exec` claim `build` as this
/// process's build in their handshake (empty: the real one), so a test can
/// see what a replaced executable does.
void forge_build_id_for_tests(const std::string& build);

} // namespace simul::detail
