#include <simul/threadpool.hpp>
