// Backend::attention_rows at the CLIP ViT-L/14-336 shape: 577 tokens (24 x 24 patches + the
// class token), 16 heads x 64, no mask, q/k/v read as column slices of one fused [577, 3 x 1024]
// qkv buffer as an encoder layer holds them. The baseline builds the same attention from the ops
// that existed before (per head: matmul q·kᵀ, scale, softmax, matmul p·v with vᵀ as the weight).
// Counter: GFLOP/s = 4 * heads * n_q * n_kv * head_dim flops (the two products) per second.
//   build/bench/attention_rows_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "af/backend/backend.hpp"
#include "af/core/tensor.hpp"
#include "bench_util.hpp"

namespace {

constexpr int64_t kHeads = 16;
constexpr int64_t kHeadDim = 64;
constexpr int64_t kDim = kHeads * kHeadDim;
constexpr int64_t kQkvStride = 3 * kDim;

void set_flops(benchmark::State& state, int64_t n_tokens) {
  const double flops = 4.0 * kHeads * static_cast<double>(n_tokens) * n_tokens * kHeadDim;
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

std::unique_ptr<af::Backend> backend_for(const benchmark::State& state) {
  af::BackendOptions options;
  options.num_threads = static_cast<int>(state.range(1));
  return af::make_backend(options);
}

// Args: n_tokens, threads.
void BM_AttentionRows(benchmark::State& state) {
  const int64_t n = state.range(0);
  const auto be = backend_for(state);
  const std::vector<float> qkv = af::bench::random_floats(static_cast<size_t>(n * kQkvStride), 1);
  std::vector<float> out(static_cast<size_t>(n * kDim));
  const float scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  for (auto _ : state) {
    be->attention_rows(qkv.data(), kQkvStride, qkv.data() + kDim, kQkvStride, qkv.data() + 2 * kDim,
                       kQkvStride, n, n, kHeads, kHeads, kHeadDim, scale, af::AttentionMask{},
                       out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, n);
}

// The same attention from matmul + softmax, head by head (what an encoder would do without
// attention_rows).
void BM_AttentionFromMatmuls(benchmark::State& state) {
  const int64_t n = state.range(0);
  const auto be = backend_for(state);
  const std::vector<float> qkv = af::bench::random_floats(static_cast<size_t>(n * kQkvStride), 1);
  std::vector<float> out(static_cast<size_t>(n * kDim));
  std::vector<float> q(static_cast<size_t>(n * kHeadDim)), scores(static_cast<size_t>(n * n)),
      head_out(static_cast<size_t>(n * kHeadDim));
  const float scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  for (auto _ : state) {
    for (int64_t h = 0; h < kHeads; ++h) {
      af::Tensor k = af::Tensor::zeros(af::DType::F32, af::Shape{n, kHeadDim});
      af::Tensor vt = af::Tensor::zeros(af::DType::F32, af::Shape{kHeadDim, n});
      auto* kd = reinterpret_cast<float*>(k.mutable_data());
      auto* vd = reinterpret_cast<float*>(vt.mutable_data());
      for (int64_t t = 0; t < n; ++t) {
        const float* row = qkv.data() + t * kQkvStride + h * kHeadDim;
        for (int64_t d = 0; d < kHeadDim; ++d) {
          q[static_cast<size_t>(t * kHeadDim + d)] = row[d];
          kd[t * kHeadDim + d] = row[kDim + d];
          vd[d * n + t] = row[2 * kDim + d];
        }
      }
      be->matmul(q.data(), n, k, nullptr, scores.data());
      be->scale(scores.data(), scale, n * n);
      be->softmax(scores.data(), n, n);
      be->matmul(scores.data(), n, vt, nullptr, head_out.data());
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t d = 0; d < kHeadDim; ++d) {
          out[static_cast<size_t>(t * kDim + h * kHeadDim + d)] =
              head_out[static_cast<size_t>(t * kHeadDim + d)];
        }
      }
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, n);
}

BENCHMARK(BM_AttentionRows)
    ->ArgNames({"n_tokens", "threads"})
    ->Args({577, 2})
    ->Args({577, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_AttentionFromMatmuls)
    ->ArgNames({"n_tokens", "threads"})
    ->Args({577, 2})
    ->Args({577, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
