// The AVX2 + FMA + F16C kernel table (compiled with those flags; see src/backend/CMakeLists.txt).
#include <immintrin.h>

#include <cstring>

#include "backend/cpu/kernels/kernel_table.hpp"

namespace af::cpu {
namespace {

struct Avx2 {
  using F = __m256;
  static constexpr int kLanes = 8;
  // 3 x 4 accumulators + 3 x vectors + 1 weight vector fill the 16 ymm registers exactly.
  static constexpr int kTileRows = 3;
  static constexpr int kTileCols = 4;
  static constexpr int kDecodeRows = 8;

  static __m256i mask(int n) {  // lanes [0, n) set; n in [0, 8]
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static F zero() { return _mm256_setzero_ps(); }
  static F set1(float v) { return _mm256_set1_ps(v); }
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  // vmaskmov does not touch (or fault on) masked-off memory, so reading past an array is safe.
  static F load_partial(const float* p, int n) { return _mm256_maskload_ps(p, mask(n)); }
  static F load_partial_fill(const float* p, int n, float fill) {
    const __m256i m = mask(n);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  }
  static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
  static void store_partial(float* p, F v, int n) { _mm256_maskstore_ps(p, mask(n), v); }
  static F load_f16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  // No 16-bit masked load before AVX-512: copy the tail into a zeroed block.
  static F load_f16_partial(const uint16_t* p, int n) {
    alignas(16) uint16_t buf[8] = {};
    std::memcpy(buf, p, static_cast<size_t>(n) * sizeof(uint16_t));
    return load_f16(buf);
  }
  static F load_i8(const int8_t* p) {  // kLanes int8 widened exactly
    return _mm256_cvtepi32_ps(
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
  static F load_bf16(const uint16_t* p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));  // bf16 is the top half of an f32
  }
  static F load_bf16_partial(const uint16_t* p, int n) {
    alignas(16) uint16_t buf[8] = {};
    std::memcpy(buf, p, static_cast<size_t>(n) * sizeof(uint16_t));
    return load_bf16(buf);
  }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F div(F a, F b) { return _mm256_div_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F min(F a, F b) { return _mm256_min_ps(a, b); }
  static F max(F a, F b) { return _mm256_max_ps(a, b); }
  static float hsum(F v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
  }
  static float hmax(F v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
  }
  static F swap_pairs(F v) { return _mm256_permute_ps(v, 0xB1); }
  static F round(F v) { return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static F pow2i(F n) {
    const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
  }
};

}  // namespace
}  // namespace af::cpu

#include "backend/cpu/kernels/simd_ops.hpp"

namespace af::cpu {

const KernelTable& avx2_kernel_table() {
  static constexpr KernelTable kTable = make_simd_table<Avx2>("avx2");
  return kTable;
}

}  // namespace af::cpu
