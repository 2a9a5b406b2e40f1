// CpuBackend::attention on the Qwen2-0.5B shape (14 query heads, 2 KV heads, head_dim 64,
// float32 KV cache, keys in the blocked layout of af/backend/key_cache.hpp) at n_past 128 and
// 4096, for decode (n_tokens 1) and a prefill chunk
// (n_tokens 128). Each iteration uses the next of 24 layers' KV caches, as a decode step does,
// so at depth 4096 (96 MiB of cache) the keys and values stream from memory rather than L3.
// Counters: keys/s = query-head x key pairs scored per second; GB/s = KV cache bytes per second
// (each cache row counted once).
//   build/bench/attention_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "af/backend/backend.hpp"
#include "af/backend/key_cache.hpp"
#include "bench_util.hpp"

namespace {

constexpr int64_t kHeads = 14;
constexpr int64_t kKvHeads = 2;
constexpr int64_t kHeadDim = 64;

using af::bench::random_floats;

// n floats starting on a page boundary, as nn::KvCache allocates its layers (a malloc'd buffer
// starts 16 bytes into a page, which splits every 64-byte vector load across two cache lines).
class PageAligned {
 public:
  explicit PageAligned(size_t n) : storage_(n + kPage / sizeof(float)) {
    const auto addr = reinterpret_cast<uintptr_t>(storage_.data());
    data_ = storage_.data() + ((kPage - addr % kPage) % kPage) / sizeof(float);
  }
  PageAligned(const PageAligned&) = delete;  // data_ points into storage_'s buffer
  PageAligned(PageAligned&&) noexcept = default;
  float* data() { return data_; }

 private:
  static constexpr size_t kPage = 4096;
  std::vector<float> storage_;
  float* data_;
};

// Args: n_past, n_tokens, threads, layers.
void BM_Attention(benchmark::State& state) {
  const int64_t n_past = state.range(0);
  const int64_t n_tokens = state.range(1);
  af::BackendOptions options;
  options.num_threads = static_cast<int>(state.range(2));
  const std::unique_ptr<af::Backend> backend = af::make_backend(options);
  const int layers = static_cast<int>(state.range(3));
  const int64_t n_ctx = n_past + n_tokens;
  const size_t kv_floats = static_cast<size_t>(n_ctx * kKvHeads * kHeadDim);
  std::vector<PageAligned> k_cache, v_cache;
  for (int l = 0; l < layers; ++l) {
    const std::vector<float> keys = random_floats(kv_floats, 2 * l + 1);
    k_cache.emplace_back(static_cast<size_t>(af::key_cache_floats(n_ctx, kKvHeads, kHeadDim)));
    af::store_keys(k_cache.back().data(), keys.data(), n_ctx, 0, kKvHeads, kHeadDim);
    const std::vector<float> values = random_floats(kv_floats, 2 * l + 2);
    v_cache.emplace_back(kv_floats);
    std::copy(values.begin(), values.end(), v_cache.back().data());
  }
  const std::vector<float> q =
      random_floats(static_cast<size_t>(n_tokens * kHeads * kHeadDim), 100);
  std::vector<float> out(q.size());
  const float scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  int layer = 0;
  for (auto _ : state) {
    backend->attention(q.data(), k_cache[layer].data(), v_cache[layer].data(), n_tokens, n_past,
                       kHeads, kKvHeads, kHeadDim, scale, out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
    layer = (layer + 1) % layers;
  }
  // Causal pairs: token t sees n_past + t + 1 keys.
  const double pairs = static_cast<double>(kHeads) *
                       (static_cast<double>(n_tokens) * static_cast<double>(n_past) +
                        static_cast<double>(n_tokens) * static_cast<double>(n_tokens + 1) / 2.0);
  state.counters["keys/s"] =
      benchmark::Counter(pairs, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB/s"] = benchmark::Counter(2.0 * static_cast<double>(kv_floats) * 4.0 * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_Attention)
    ->ArgNames({"n_past", "n_tokens", "threads", "layers"})
    ->Args({0, 128, 2, 24})
    ->Args({0, 128, 1, 24})
    ->Args({128, 1, 2, 24})
    ->Args({4096, 1, 2, 24})
    ->Args({128, 128, 2, 24})
    ->Args({4096, 128, 2, 24})
    ->Args({4096, 1, 1, 24})
    ->Args({4096, 128, 1, 24})
    ->Args({0, 2048, 2, 1})
    ->Args({128, 1, 1, 1})
    ->Args({4096, 1, 1, 1})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
