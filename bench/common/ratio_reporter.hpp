#pragma once

// A Google Benchmark reporter that also prints simul's ratios against peers.
//
// Benchmarks are named "<workload>/<side>", e.g. "handoff_cross_thread/simul"
// and "handoff_cross_thread/std". After the usual console table, every
// workload gets one line per peer: peer time ÷ simul time, so higher is better
// for simul. Ratios measured side by side in one run hold on a noisy machine
// where absolute times drift.

#include <benchmark/benchmark.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace simul::bench {

class ratio_reporter : public benchmark::ConsoleReporter {
 public:
  ratio_reporter() : ConsoleReporter(OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const auto& run : runs) {
      if (run.error_occurred) {
        continue;
      }
      // With repetitions, keep the median; without, the single run.
      const bool aggregate = run.run_type == Run::RT_Aggregate;
      if (aggregate && run.aggregate_name != "median") {
        continue;
      }
      auto name = run.run_name.str();
      const auto slash = name.find('/');
      if (slash == std::string::npos) {
        continue;
      }
      // The side ends at the next '/' ("simul/real_time" is side "simul").
      const auto side_end = name.find('/', slash + 1);
      auto& slot = m_times[name.substr(0, slash)][name.substr(slash + 1, side_end - slash - 1)];
      if (aggregate || slot == 0.0) {
        slot = run.GetAdjustedRealTime();
      }
    }
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    std::printf("\n%-28s %-12s %s\n", "workload", "peer", "peer time / simul time (higher is better)");
    for (const auto& [workload, sides] : m_times) {
      const auto ours = sides.find("simul");
      if (ours == sides.end() || ours->second <= 0.0) {
        continue;
      }
      for (const auto& [side, time] : sides) {
        if (side != "simul") {
          std::printf("%-28s %-12s %.2fx\n", workload.c_str(), side.c_str(), time / ours->second);
        }
      }
    }
  }

 private:
  std::map<std::string, std::map<std::string, double>> m_times;
};

} // namespace simul::bench
