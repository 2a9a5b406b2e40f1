// Arithmetic peaks of this CPU, for the compute-bound side of the roofline (prefill): float32
// FMA, AVX512_BF16 dot products (vdpbf16ps) and AVX512_VNNI int8 dot products (vpdpbusd), on 1
// and N threads. Each thread runs 12 independent accumulator chains in registers (enough to
// cover the instructions' latency on current cores), so the loop measures issue throughput.
//
//   build/bench/cpu_peak_bench [--threads N] [--repeat R]
//
// Prints the best of R runs per line. Operations count a multiply and an add as two.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {

constexpr int kChains = 12;
constexpr long kIterations = 20'000'000;  // per thread, kChains instructions each

using Loop = double (*)();  // returns operations done

// Makes the accumulators count as read, so the compiler keeps every chain of the loop.
template <class V>
void keep_alive(V (&acc)[kChains]) {
  asm volatile("" : : "r"(acc) : "memory");
}

__attribute__((target("avx512f"))) double fma_f32_loop() {
  __m512 acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_ps(static_cast<float>(j) * 1e-3f);
  const __m512 mul = _mm512_set1_ps(0.999f), add = _mm512_set1_ps(1e-6f);
  for (long i = 0; i < kIterations; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_fmadd_ps(acc[j], mul, add);
  }
  keep_alive(acc);
  return static_cast<double>(kIterations) * kChains * 16 * 2;
}

__attribute__((target("avx512f,avx512bf16"))) double dot_bf16_loop() {
  __m512 acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_ps(static_cast<float>(j));
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80);  // 1.0 in bf16
  const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3c00);  // 2^-7
  for (long i = 0; i < kIterations; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_dpbf16_ps(acc[j], a, b);
  }
  keep_alive(acc);
  return static_cast<double>(kIterations) * kChains * 32 * 2;
}

__attribute__((target("avx512f,avx512vnni"))) double dot_int8_loop() {
  __m512i acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_epi32(j);
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
  for (long i = 0; i < kIterations; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_dpbusd_epi32(acc[j], a, b);
  }
  keep_alive(acc);
  return static_cast<double>(kIterations) * kChains * 64 * 2;
}

// Operations per second (1e9) of `loop` run on `threads` threads at once.
double giga_ops_per_s(Loop loop, int threads) {
  std::vector<double> ops(static_cast<size_t>(threads));
  std::vector<std::thread> workers;
  const auto t0 = std::chrono::steady_clock::now();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&ops, loop, t] { ops[static_cast<size_t>(t)] = loop(); });
  }
  for (auto& w : workers) w.join();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double total = 0;
  for (double o : ops) total += o;
  return total / s / 1e9;
}

double best_of(Loop loop, int threads, int repeat) {
  double best = 0;
  for (int r = 0; r < repeat; ++r) best = std::max(best, giga_ops_per_s(loop, threads));
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int repeat = 3;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      threads = std::max(1, std::atoi(argv[++i]));
    } else if (std::strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
      repeat = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: %s [--threads N] [--repeat R]\n", argv[0]);
      return 2;
    }
  }
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f")) {
    std::printf("no AVX-512 on this CPU: nothing to measure\n");
    return 0;
  }
  std::vector<int> thread_counts = {1};
  if (threads > 1) thread_counts.push_back(threads);
  for (int t : thread_counts) {
    std::printf("threads %d: f32 fma %.0f GFLOP/s", t, best_of(fma_f32_loop, t, repeat));
    if (__builtin_cpu_supports("avx512bf16")) {
      std::printf(", bf16 dot %.0f GFLOP/s", best_of(dot_bf16_loop, t, repeat));
    }
    if (__builtin_cpu_supports("avx512vnni")) {
      std::printf(", int8 dot %.0f GOP/s", best_of(dot_int8_loop, t, repeat));
    }
    std::printf("\n");
  }
  return 0;
}
