#pragma once

// Helpers of the trace tests: lanes by name, slice names in order, and the
// checker script (python's json and xml.etree) run on a written file.

#include <simul/trace.hpp>

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace trace_test {

inline const simul::trace::lane* find_lane(const simul::trace::timeline& t, const std::string& name) {
  for (const auto& l : t.lanes) {
    if (l.name == name) {
      return &l;
    }
  }
  return nullptr;
}

inline const simul::trace::lane* find_thread(const simul::trace::timeline& t, int tid) {
  for (const auto& l : t.lanes) {
    if (l.tid == tid) {
      return &l;
    }
  }
  return nullptr;
}

inline std::vector<std::string> run_names(const simul::trace::timeline& t, const simul::trace::lane& l) {
  std::vector<std::string> out;
  for (const auto& s : l.slices) {
    if (s.what != simul::trace::slice::kind::run) {
      continue;
    }
    std::string name = s.name;
    for (const auto& other : t.lanes) {
      if (other.task != 0 && other.task == s.task) {
        name = other.name;
      }
    }
    out.push_back(name);
  }
  return out;
}

/// Runs tests/trace/check_trace.py MODE FILE ARGS...; its exit status.
inline int check_file(const std::string& mode, const std::string& file, const std::string& args = "") {
  const std::string command =
      std::string(SIMUL_TEST_PYTHON) + " " + SIMUL_TEST_CHECKER + " " + mode + " " + file + " " + args;
  return std::system(command.c_str());
}

inline std::string temp_file(const std::string& name) {
  return testing::TempDir() + "simul_trace_" + std::to_string(::getpid()) + "_" + name;
}

} // namespace trace_test
