// The 8-row packed GEMM (packed8_gemm.hpp) with AVX-VNNI's vpdpbusd.
#include "backend/cpu/quant/packed8_gemm.hpp"

namespace af::cpu::quant::packed8 {
namespace {

struct AvxVnniOps {
  static constexpr bool kQ8UsesOffset = true;
  static __m256i nibbles(__m256i acc, __m256i lo, __m256i alo, __m256i hi, __m256i ahi) {
    return _mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32(acc, lo, alo), hi, ahi);
  }
  // Q8_0 as the unsigned w + 128; the sums start from -128 * block sum (the split offset).
  struct Q8 {
    __m256i u;
  };
  static Q8 q8_chunk(__m256i w) { return {_mm256_xor_si256(w, _mm256_set1_epi8(-128))}; }
  static __m256i q8(__m256i acc, const Q8& w, __m256i a) {
    return _mm256_dpbusd_avx_epi32(acc, w.u, a);
  }
};

}  // namespace

GemmFn avxvnni_gemm(DType type) { return simd::gemm_for<AvxVnniOps>(type); }

}  // namespace af::cpu::quant::packed8
