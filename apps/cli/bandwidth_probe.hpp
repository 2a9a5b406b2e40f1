// The memory-bandwidth probe of `af-cli bench`: the highest sustained read bandwidth the machine
// gives to `threads` threads, which bounds a decode step that streams the weights once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace af::cli {

// One timed pass of each read method over the whole buffer, in GB/s (1e9 bytes per second).
struct BandwidthSample {
  double stream_gb_s = 0;  // the streaming kernel (stream_method())
  double memcpy_gb_s = 0;  // memcpy of each thread's share into a small cache-resident buffer
  double best_gb_s() const { return stream_gb_s > memcpy_gb_s ? stream_gb_s : memcpy_gb_s; }
};

// Reads a buffer (keep it much larger than the last-level cache) with `threads` threads, each
// streaming its contiguous share as the decode matmuls stream the weights: the widest vector
// loads the CPU has, four independent accumulators (one chain would stall on its own latency)
// and software prefetch a few KB ahead like the decode kernels. The buffer is 2 MiB-aligned with
// transparent huge pages asked for, and every page is written by the thread that later reads it
// before the first pass, so no timed pass pays page faults or TLB walks the weights do not pay.
// The threads are started before the clock starts (they wait at a barrier).
class BandwidthProbe {
 public:
  BandwidthProbe(size_t bytes, int threads);
  ~BandwidthProbe();
  BandwidthProbe(const BandwidthProbe&) = delete;
  BandwidthProbe& operator=(const BandwidthProbe&) = delete;

  BandwidthSample pass();
  // e.g. "avx512-4acc-prefetch4k" (what bench reports as bandwidth_method's stream part).
  const char* stream_method() const;
  size_t bytes() const { return share_ * static_cast<size_t>(threads_); }
  uint64_t sink() const { return sink_; }

 private:
  enum class Method { kStream, kMemcpy };
  double timed(Method m);

  struct Free {
    void operator()(unsigned char* p) const;
  };
  std::unique_ptr<unsigned char, Free> data_;
  size_t share_ = 0;  // bytes per thread, a multiple of 256
  int threads_;
  uint64_t sink_ = 0;
};

}  // namespace af::cli
