#pragma once

// Moved: messages are part of the codec unit, <simul/procpool/detail/codec/message.hpp>.
#include <simul/procpool/detail/codec/message.hpp>
