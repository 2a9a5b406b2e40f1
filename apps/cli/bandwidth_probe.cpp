#include "bandwidth_probe.hpp"

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace af::cli {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;
// As far ahead as the decode kernels prefetch (quant/dot_simd.hpp: kPrefetchBytes): with the
// hardware prefetcher alone the probe read 20-30 % below the decode on this kind of VM.
constexpr size_t kPrefetchAhead = 4096;
constexpr size_t kStep = 256;              // bytes per loop iteration: four 64-byte lines
constexpr size_t kMemcpyChunk = 16 << 10;  // fits L1d, so the copy's stores stay in cache

using StreamFn = uint64_t (*)(const unsigned char*, size_t);

// Generic fallback: eight independent 64-bit chains (the compiler vectorises them to the
// baseline ISA's loads) plus the same prefetch.
uint64_t stream_generic(const unsigned char* p, size_t bytes) {
  uint64_t acc[8] = {};
  for (size_t i = 0; i < bytes; i += kStep) {
    __builtin_prefetch(p + i + kPrefetchAhead);
    __builtin_prefetch(p + i + kPrefetchAhead + 128);
    for (size_t w = 0; w < kStep / 8; ++w) {
      uint64_t v;
      std::memcpy(&v, p + i + w * 8, 8);
      acc[w % 8] ^= v;
    }
  }
  uint64_t r = 0;
  for (uint64_t a : acc) r ^= a;
  return r;
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) uint64_t stream_avx2(const unsigned char* p, size_t bytes) {
  __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
  for (size_t i = 0; i < bytes; i += kStep) {
    for (size_t l = 0; l < kStep; l += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(p + i + l + kPrefetchAhead), _MM_HINT_T0);
    }
    const auto* v = reinterpret_cast<const __m256i*>(p + i);
    a = _mm256_xor_si256(a, _mm256_xor_si256(_mm256_load_si256(v), _mm256_load_si256(v + 1)));
    b = _mm256_xor_si256(b, _mm256_xor_si256(_mm256_load_si256(v + 2), _mm256_load_si256(v + 3)));
    c = _mm256_xor_si256(c, _mm256_xor_si256(_mm256_load_si256(v + 4), _mm256_load_si256(v + 5)));
    d = _mm256_xor_si256(d, _mm256_xor_si256(_mm256_load_si256(v + 6), _mm256_load_si256(v + 7)));
  }
  const __m256i r = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
  return static_cast<uint64_t>(_mm256_extract_epi64(r, 0) ^ _mm256_extract_epi64(r, 3));
}

__attribute__((target("avx512f"))) uint64_t stream_avx512(const unsigned char* p, size_t bytes) {
  __m512i a = _mm512_setzero_si512(), b = a, c = a, d = a;
  for (size_t i = 0; i < bytes; i += kStep) {
    for (size_t l = 0; l < kStep; l += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(p + i + l + kPrefetchAhead), _MM_HINT_T0);
    }
    a = _mm512_xor_si512(a, _mm512_load_si512(p + i));
    b = _mm512_xor_si512(b, _mm512_load_si512(p + i + 64));
    c = _mm512_xor_si512(c, _mm512_load_si512(p + i + 128));
    d = _mm512_xor_si512(d, _mm512_load_si512(p + i + 192));
  }
  const __m512i r = _mm512_xor_si512(_mm512_xor_si512(a, b), _mm512_xor_si512(c, d));
  // Stored, not _mm512_reduce_*: GCC 12 warns about an uninitialised register inside those.
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512(lanes, r);
  uint64_t x = 0;
  for (uint64_t l : lanes) x ^= l;
  return x;
}
#endif

struct StreamKernel {
  StreamFn fn;
  const char* name;
};

StreamKernel pick_stream_kernel() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return {stream_avx512, "avx512-4acc-prefetch4k"};
  if (__builtin_cpu_supports("avx2")) return {stream_avx2, "avx2-4acc-prefetch4k"};
#endif
  return {stream_generic, "generic-8acc-prefetch4k"};
}

const StreamKernel& stream_kernel() {
  static const StreamKernel kKernel = pick_stream_kernel();
  return kKernel;
}

uint64_t memcpy_read(const unsigned char* p, size_t bytes) {
  alignas(64) static thread_local unsigned char dst[kMemcpyChunk];
  uint64_t r = 0;
  for (size_t i = 0; i < bytes; i += kMemcpyChunk) {
    std::memcpy(dst, p + i, std::min(kMemcpyChunk, bytes - i));
    r ^= dst[0];
  }
  return r;
}

// Runs body(t) on `threads` threads (t = 0 on the caller); the clock starts once all of them
// are running, so thread start-up is not timed. Returns seconds.
template <class Body>
double run_timed(int threads, Body body) {
  std::barrier start(threads);
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) {
    pool.emplace_back([&, t] {
      start.arrive_and_wait();
      body(t);
    });
  }
  start.arrive_and_wait();
  const auto t0 = std::chrono::steady_clock::now();
  body(0);
  for (std::thread& th : pool) th.join();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

void BandwidthProbe::Free::operator()(unsigned char* p) const { std::free(p); }

BandwidthProbe::BandwidthProbe(size_t bytes, int threads) : threads_(std::max(threads, 1)) {
  const auto n = static_cast<size_t>(threads_);
  share_ = std::max<size_t>(bytes / n / kStep * kStep, kStep);
  // Room for the prefetch to run past the end without touching an unmapped page.
  const size_t alloc = (share_ * n + kPrefetchAhead + kHugePage - 1) / kHugePage * kHugePage;
  data_.reset(static_cast<unsigned char*>(std::aligned_alloc(kHugePage, alloc)));
  if (!data_) throw std::bad_alloc();
#if defined(__linux__)
  madvise(data_.get(), alloc, MADV_HUGEPAGE);  // a hint: without THP the probe still works
#endif
  // First touch by the thread that reads the share (its NUMA node), outside any timed pass.
  unsigned char* base = data_.get();
  run_timed(threads_, [&](int t) {
    unsigned char* p = base + static_cast<size_t>(t) * share_;
    for (size_t i = 0; i < share_; ++i) p[i] = static_cast<unsigned char>(i * 0x9Du + t);
  });
  std::memset(base + share_ * n, 0, alloc - share_ * n);
}

BandwidthProbe::~BandwidthProbe() = default;

const char* BandwidthProbe::stream_method() const { return stream_kernel().name; }

double BandwidthProbe::timed(Method m) {
  std::vector<uint64_t> sums(static_cast<size_t>(threads_));
  const StreamFn stream = stream_kernel().fn;
  const unsigned char* base = data_.get();
  const double s = run_timed(threads_, [&](int t) {
    const unsigned char* p = base + static_cast<size_t>(t) * share_;
    sums[static_cast<size_t>(t)] =
        m == Method::kStream ? stream(p, share_) : memcpy_read(p, share_);
  });
  for (uint64_t v : sums) sink_ ^= v;
  return static_cast<double>(bytes()) / s / 1e9;
}

BandwidthSample BandwidthProbe::pass() {
  BandwidthSample s;
  s.stream_gb_s = timed(Method::kStream);
  s.memcpy_gb_s = timed(Method::kMemcpy);
  return s;
}

}  // namespace af::cli
