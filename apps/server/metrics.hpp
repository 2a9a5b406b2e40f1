#pragma once
// Counters and latency histograms of af-server, rendered as Prometheus text (format 0.0.4).
#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "af/runtime/scheduler.hpp"

namespace af::server {

class Metrics {
 public:
  // Histogram bucket upper bounds in seconds (+Inf is implicit).
  static constexpr std::array<double, 12> kBuckets = {0.005, 0.01, 0.025, 0.05, 0.1,  0.25,
                                                      0.5,   1.0,  2.5,   5.0,  10.0, 30.0};

  // One HTTP answer: endpoint path and status code.
  void count_request(const std::string& path, int status);
  // One finished generation (a choice).
  void observe_generation(const runtime::RequestResult& result);

  // Everything, with the scheduler's gauges and totals.
  std::string render(const runtime::SchedulerStats& stats, int parallel) const;

 private:
  struct Histogram {
    std::array<uint64_t, kBuckets.size()> counts{};  // per bucket, not cumulative
    uint64_t count = 0;
    double sum = 0;
    void observe(double seconds);
    void render(std::string& out, const std::string& name) const;
  };

  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;  // (path, status) -> count
  std::map<std::string, uint64_t> finish_reasons_;
  Histogram queue_time_, first_token_time_, request_time_;
};

}  // namespace af::server
