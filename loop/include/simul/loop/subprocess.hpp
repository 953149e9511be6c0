#pragma once
// moved to <simul/loop/io/subprocess.hpp>; this path keeps working
#include <simul/loop/io/subprocess.hpp>
