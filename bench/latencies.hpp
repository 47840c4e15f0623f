// Latency samples of a benchmark, in milliseconds, the figures quoted from
// them, and a measured operation's record. Header-only; bench programs include it as "latencies.hpp".
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

namespace citadel::bench {

struct Latencies {
  std::vector<double> ms;

  // The sample at rank p * (n - 1), rounded down; 0 without samples.
  double Percentile(double p) const {
    if (ms.empty()) return 0;
    std::vector<double> sorted = ms;
    std::sort(sorted.begin(), sorted.end());
    return sorted[static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1))];
  }
  double Mean() const {
    double sum = 0;
    for (double value : ms) sum += value;
    return ms.empty() ? 0 : sum / static_cast<double>(ms.size());
  }
};

// One measured operation of a benchmark run.
struct Figures {
  std::string name;
  std::size_t operations = 0;
  std::size_t errors = 0;
  double seconds = 0;
  Latencies latencies;
};

}  // namespace citadel::bench
