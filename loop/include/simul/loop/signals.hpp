#pragma once
// moved to <simul/loop/io/signals.hpp>; this path keeps working
#include <simul/loop/io/signals.hpp>
