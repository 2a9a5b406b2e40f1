// K-quant matmul speed at prefill row counts: the Qwen2-0.5B down_proj shape (896 weight rows of
// 4864) in Q4_K, Q5_K and Q6_K, with m = 1 (decode, weight in cache) up to 512 activation rows.
// Reports multiply-adds per second.
//   build/bench/kquant_prefill_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "af/core/tensor.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "bench_util.hpp"

namespace {

constexpr int64_t kRows = 896;
constexpr int64_t kCols = 4864;

using af::bench::random_floats;

void kquant_matmul(benchmark::State& state, af::DType type, int64_t m) {
  const int threads = static_cast<int>(state.range(0));
  const af::Tensor weight = af::bench::quantized_weight(type, kRows, kCols, 1);
  const std::vector<float> x = random_floats(static_cast<size_t>(m * kCols), 2);
  std::vector<float> y(static_cast<size_t>(m * kRows));
  af::cpu::CpuBackend backend(af::BackendOptions{af::Device::cpu(), threads, ""});
  for (auto _ : state) {
    backend.matmul(x.data(), m, weight, nullptr, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GMAC/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * static_cast<double>(m * kRows * kCols) / 1e9,
      benchmark::Counter::kIsRate);
  state.SetLabel(backend.quant_kernels().isa);
}

void register_all() {
  const std::pair<const char*, af::DType> types[] = {
      {"q4_k", af::DType::Q4_K}, {"q5_k", af::DType::Q5_K}, {"q6_k", af::DType::Q6_K}};
  for (const auto& [name, type] : types) {
    for (const int64_t m : {1, 2, 3, 4, 8, 16, 128, 512}) {
      const std::string label = std::string(name) + "/m" + std::to_string(m);
      benchmark::RegisterBenchmark(
          label.c_str(), [type = type, m](benchmark::State& s) { kquant_matmul(s, type, m); })
          ->Arg(1)
          ->Arg(2)
          ->UseRealTime();
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
