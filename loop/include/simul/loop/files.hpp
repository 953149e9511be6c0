#pragma once
// moved to <simul/loop/io/files.hpp>; this path keeps working
#include <simul/loop/io/files.hpp>
