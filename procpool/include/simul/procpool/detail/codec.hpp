#pragma once

// Moved: the codec is its own unit, <simul/procpool/detail/codec/codec.hpp>.
#include <simul/procpool/detail/codec/codec.hpp>
