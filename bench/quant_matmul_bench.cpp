// Quantized matmul speed on Qwen2-0.5B-sized weights (down_proj: 896 rows of 4864; k must be a
// multiple of 256 for the K-quants; the "Up" kinds are gate/up_proj, 4864 rows of 896, for the
// 32-element types only). Decode (m = 1) cycles through enough copies of the weight
// to exceed the caches, so it measures streaming from memory: the GB/s counter is weight bytes
// per second, to compare with the read bandwidth the ReadBandwidth benchmark measures in the
// same process. DecodeCached reuses one copy (cache-resident: the kernel's ceiling). Prefill
// (m = 128) reports multiply-adds per second. Shape/ runs the Qwen2-0.5B matmul shapes with the
// weight as stored ("unpacked": m >= 2 packs tiles on the fly on AVX-512 VNNI) or repacked
// at load ("packed", CpuBackend::prepare_matmul_weight); with 1 thread, compare the CPU column on
// a busy machine. AF_BENCH_ISA=avx2 (scalar, avx512) forces the kernel table as --isa does.
//   build/bench/quant_matmul_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "af/backend/quant.hpp"
#include "af/core/half.hpp"
#include "af/core/tensor.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "bench_util.hpp"

namespace {

struct WeightShape {
  int64_t rows, cols;
};
constexpr WeightShape kDown = {896, 4864};
constexpr WeightShape kUp = {4864, 896};
constexpr int64_t kStreamBytes = int64_t{512} << 20;  // well past any L3

using af::bench::quantized_weight;
using af::bench::random_floats;

// The backend's ISA option: AF_BENCH_ISA, or "" (the best this CPU has).
std::string bench_isa() {
  const char* isa = std::getenv("AF_BENCH_ISA");
  return isa ? isa : "";
}

// `copies` weights of one random matrix in `type` (copies of the same bytes: speed only).
std::vector<af::Tensor> make_weights(af::DType type, WeightShape shape, int copies) {
  const int64_t rows = shape.rows, cols = shape.cols;
  const std::vector<float> w = random_floats(static_cast<size_t>(rows * cols), 1);
  af::Tensor first = af::Tensor::zeros(type, af::Shape{rows, cols});
  if (af::quant::is_supported(type)) {
    const int64_t rb = af::row_bytes(type, cols);
    for (int64_t r = 0; r < rows; ++r) {
      af::quant::quantize_row(type, w.data() + r * cols, first.mutable_data() + r * rb, cols);
    }
  } else {  // f16 or bf16
    auto* h = reinterpret_cast<uint16_t*>(first.mutable_data());
    for (size_t i = 0; i < w.size(); ++i) {
      h[i] = type == af::DType::BF16 ? af::f32_to_bf16(w[i]) : af::f32_to_f16(w[i]);
    }
  }
  std::vector<af::Tensor> out = {first};
  for (int i = 1; i < copies; ++i) {
    af::Tensor t = af::Tensor::zeros(type, af::Shape{rows, cols});
    std::memcpy(t.mutable_data(), first.data(), first.nbytes());
    out.push_back(t);
  }
  return out;
}

void matmul_bench(benchmark::State& state, af::DType type, WeightShape shape, int64_t m,
                  bool from_memory, bool bf16_dot) {
  const int64_t rows = shape.rows, cols = shape.cols;
  const int threads = static_cast<int>(state.range(0));
  const int64_t bytes = af::row_bytes(type, cols) * rows;
  const int copies = from_memory ? static_cast<int>(kStreamBytes / bytes) + 1 : 1;
  const std::vector<af::Tensor> weights = make_weights(type, shape, copies);
  const std::vector<float> x = random_floats(static_cast<size_t>(m * cols), 2);
  std::vector<float> y(static_cast<size_t>(m * rows));
  af::BackendOptions options{af::Device::cpu(), threads, bench_isa()};
  options.bf16_dot = bf16_dot;
  af::cpu::CpuBackend backend(options);
  size_t i = 0;
  for (auto _ : state) {
    backend.matmul(x.data(), m, weights[i++ % weights.size()], nullptr, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["GB/s"] =
      benchmark::Counter(n * static_cast<double>(bytes) / 1e9, benchmark::Counter::kIsRate);
  if (m > 1) {
    state.counters["GMAC/s"] = benchmark::Counter(n * static_cast<double>(m * rows * cols) / 1e9,
                                                  benchmark::Counter::kIsRate);
  }
  state.SetLabel(backend.name() + " " + backend.quant_kernels().isa);
}

// Qwen2-0.5B shapes, the weight as stored (unpacked) or repacked by prepare_matmul_weight.
// Decode (m = 1) cycles through copies totalling more than the caches, like Decode/ above.
// BF16 goes through the opt-in bf16 dot products (BackendOptions::bf16_dot); F16 "packed" is
// the dense packed layout.
void shape_bench(benchmark::State& state, af::DType type, int64_t n, int64_t k, int64_t m,
                 bool packed, bool cached = false) {
  const int threads = static_cast<int>(state.range(0));
  af::BackendOptions options{af::Device::cpu(), threads, bench_isa()};
  options.bf16_dot = type == af::DType::BF16;
  af::cpu::CpuBackend backend(options);
  const int64_t bytes = af::row_bytes(type, k) * n;
  const int copies = m == 1 && !cached ? static_cast<int>(kStreamBytes / bytes) + 1 : 1;
  std::vector<af::Tensor> weights;
  std::vector<std::shared_ptr<const af::PreparedWeight>> prepared;
  if (type == af::DType::BF16 || type == af::DType::F16) {
    const std::vector<float> w = random_floats(static_cast<size_t>(n * k), 3);
    af::Tensor t = af::Tensor::zeros(type, af::Shape{n, k});
    auto* dst = reinterpret_cast<uint16_t*>(t.mutable_data());
    for (size_t i = 0; i < w.size(); ++i) {
      dst[i] = type == af::DType::F16 ? af::f32_to_f16(w[i]) : af::f32_to_bf16(w[i]);
    }
    weights.push_back(t);
  } else {
    weights.push_back(quantized_weight(type, n, k));
  }
  for (int i = 1; i < copies; ++i) {
    af::Tensor t = af::Tensor::zeros(type, af::Shape{n, k});
    std::memcpy(t.mutable_data(), weights[0].data(), weights[0].nbytes());
    weights.push_back(t);
  }
  for (const af::Tensor& w : weights) {
    prepared.push_back(packed ? backend.prepare_matmul_weight(w) : nullptr);
  }
  if (packed && !prepared[0]) {
    state.SkipWithError("this backend does not repack weights");
    return;
  }
  const std::vector<float> x = random_floats(static_cast<size_t>(m * k), 2);
  std::vector<float> y(static_cast<size_t>(m * n));
  size_t i = 0;
  for (auto _ : state) {
    const size_t c = i++ % weights.size();
    backend.matmul(x.data(), m, weights[c], nullptr, y.data(), prepared[c].get());
    benchmark::DoNotOptimize(y.data());
  }
  const double iters = static_cast<double>(state.iterations());
  state.counters["GB/s"] =
      benchmark::Counter(iters * static_cast<double>(bytes) / 1e9, benchmark::Counter::kIsRate);
  state.counters["GMAC/s"] =
      benchmark::Counter(iters * static_cast<double>(m * n * k) / 1e9, benchmark::Counter::kIsRate);
}

// Sums a buffer far larger than the caches, split across `threads` threads.
void read_bandwidth(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const size_t n = static_cast<size_t>(kStreamBytes) / sizeof(uint64_t);
  std::vector<uint64_t> buf(n, 1);
  std::vector<uint64_t> sums(static_cast<size_t>(threads) * 8);
  for (auto _ : state) {
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        const size_t b = n * t / threads, e = n * (t + 1) / threads;
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (size_t i = b; i + 4 <= e; i += 4) {
          s0 += buf[i];
          s1 += buf[i + 1];
          s2 += buf[i + 2];
          s3 += buf[i + 3];
        }
        sums[static_cast<size_t>(t) * 8] = s0 + s1 + s2 + s3;
      });
    }
    for (auto& th : pool) th.join();
    benchmark::DoNotOptimize(sums.data());
  }
  state.counters["GB/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * static_cast<double>(kStreamBytes) / 1e9,
      benchmark::Counter::kIsRate);
}

void register_shapes() {
  const std::pair<const char*, af::DType> types[] = {
      {"q4_0", af::DType::Q4_0}, {"q8_0", af::DType::Q8_0}, {"q5_0", af::DType::Q5_0},
      {"q4_1", af::DType::Q4_1}, {"q5_1", af::DType::Q5_1}, {"bf16dot", af::DType::BF16},
      {"f16", af::DType::F16},   {"q4_k", af::DType::Q4_K}, {"q5_k", af::DType::Q5_K},
      {"q6_k", af::DType::Q6_K}, {"q2_k", af::DType::Q2_K}, {"q3_k", af::DType::Q3_K}};
  // Qwen2-0.5B's, then Qwen2.5-1.5B's gate/up and down_proj (rows of 1536 and 8960, multiples
  // of 256, so the K-quants apply).
  const std::pair<int64_t, int64_t> shapes[] = {
      {4864, 896}, {896, 4864}, {896, 896}, {128, 896}, {151936, 896}, {8960, 1536}, {1536, 8960}};
  for (const auto& [name, type] : types) {
    for (const auto& [n, k] : shapes) {
      if (k % af::info(type).block_size != 0) continue;
      for (int64_t m : {1, 4, 128}) {
        if (n == 151936 && m > 1) continue;  // the lm_head only sees the last prompt row
        for (bool packed : {false, true}) {
          const std::string label = std::string("Shape/") + name + "/" + std::to_string(n) + "x" +
                                    std::to_string(k) + "/m" + std::to_string(m) +
                                    (packed ? "/packed" : "/unpacked");
          benchmark::RegisterBenchmark(label.c_str(),
                                       [type = type, n = n, k = k, m, packed](benchmark::State& s) {
                                         shape_bench(s, type, n, k, m, packed);
                                       })
              ->Arg(1)
              ->Arg(2)
              ->UseRealTime();
        }
      }
      // m1cached: one copy of the weight (in L2/L3), the decode kernel's own ceiling.
      for (bool packed : {false, true}) {
        if (n == 151936) continue;
        const std::string label = std::string("Shape/") + name + "/" + std::to_string(n) + "x" +
                                  std::to_string(k) + "/m1cached" +
                                  (packed ? "/packed" : "/unpacked");
        benchmark::RegisterBenchmark(label.c_str(),
                                     [type = type, n = n, k = k, packed](benchmark::State& s) {
                                       shape_bench(s, type, n, k, 1, packed, true);
                                     })
            ->Arg(1)
            ->UseRealTime();
      }
    }
  }
}

void register_all() {
  register_shapes();
  benchmark::RegisterBenchmark("ReadBandwidth", read_bandwidth)->Arg(1)->Arg(2)->UseRealTime();
  // "bf16dot": the opt-in vdpbf16ps path (BackendOptions::bf16_dot) on the same bf16 weight.
  const std::pair<const char*, af::DType> types[] = {
      {"f16", af::DType::F16},   {"bf16", af::DType::BF16}, {"bf16dot", af::DType::BF16},
      {"q8_0", af::DType::Q8_0}, {"q4_0", af::DType::Q4_0}, {"q4_k", af::DType::Q4_K},
      {"q6_k", af::DType::Q6_K}, {"q5_k", af::DType::Q5_K}, {"q4_1", af::DType::Q4_1},
      {"q5_0", af::DType::Q5_0}, {"q5_1", af::DType::Q5_1}, {"q2_k", af::DType::Q2_K},
      {"q3_k", af::DType::Q3_K},
  };
  for (const auto& [name, type] : types) {
    // Decode streams from memory; DecodeCached (one copy, in L2/L3) shows the kernel's own
    // ceiling, which must exceed the memory bandwidth for decode to be memory-bound.
    const struct {
      const char* label;
      WeightShape shape;
      int64_t m;
      bool from_memory;
    } kinds[] = {{"Decode/", kDown, 1, true},        {"DecodeCached/", kDown, 1, false},
                 {"Prefill128/", kDown, 128, false}, {"DecodeUp/", kUp, 1, true},
                 {"DecodeCachedUp/", kUp, 1, false}, {"Prefill128Up/", kUp, 128, false}};
    const bool legacy_block = af::info(type).block_size <= 32;
    for (const auto& kind : kinds) {
      if (kind.shape.cols % 256 != 0 && !legacy_block) continue;
      const std::string label = std::string(kind.label) + name;
      benchmark::RegisterBenchmark(
          label.c_str(),
          [type = type, kind, dot = std::string(name) == "bf16dot"](benchmark::State& s) {
            matmul_bench(s, type, kind.shape, kind.m, kind.from_memory, dot);
          })
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
