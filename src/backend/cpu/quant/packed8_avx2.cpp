// The 8-row packed GEMM (packed8_gemm.hpp) with AVX2's vpmaddubsw + vpmaddwd.
#include "backend/cpu/quant/packed8_gemm.hpp"

namespace af::cpu::quant::packed8 {
namespace {

struct Avx2Ops {
  static constexpr bool kQ8UsesOffset = false;
  // Nibbles (0..15) times int8: each pair, and the sum of the two products' pairs, stays far
  // inside int16 (2 * 2 * 15 * 128), so they add before one vpmaddwd.
  static __m256i nibbles(__m256i acc, __m256i lo, __m256i alo, __m256i hi, __m256i ahi) {
    const __m256i pairs =
        _mm256_add_epi16(_mm256_maddubs_epi16(lo, alo), _mm256_maddubs_epi16(hi, ahi));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
  }
  // Q8_0 as |w| x sign(a, w): vpmaddubsw pairs stay within int16 (at most 2 * 128 * 127).
  struct Q8 {
    __m256i abs, raw;
  };
  static Q8 q8_chunk(__m256i w) { return {_mm256_abs_epi8(w), w}; }
  static __m256i q8(__m256i acc, const Q8& w, __m256i a) {
    const __m256i pairs = _mm256_maddubs_epi16(w.abs, _mm256_sign_epi8(a, w.raw));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
  }
};

}  // namespace

GemmFn avx2_gemm(DType type) { return simd::gemm_for<Avx2Ops>(type); }

}  // namespace af::cpu::quant::packed8
