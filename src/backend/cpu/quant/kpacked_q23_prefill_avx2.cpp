// The 256-bit Q2_K / Q3_K prefill kernels (kpacked_q23_prefill_simd256.hpp) with AVX2's
// vpmaddubsw + vpmaddwd.
#include "backend/cpu/quant/kpacked_q23_prefill_simd256.hpp"

namespace af::cpu::quant::kpacked {
namespace {

struct Avx2PrefillOps {
  // The sub-block sums run as the two int16 halves of each lane (vpmaddubsw's pairs, added
  // with vpaddw): the start goes in the low half only, and the scale into both halves, so that
  // one vpmaddwd multiplies and adds both.
  static int32_t start(int v) { return v & 0xffff; }
  static __m256i scale(__m256i s) { return _mm256_or_si256(s, _mm256_slli_epi32(s, 16)); }
  static __m256i dot(__m256i sub, __m256i w, __m256i a) {
    return _mm256_add_epi16(sub, _mm256_maddubs_epi16(w, a));
  }
  static __m256i madd(__m256i acc, __m256i x, __m256i s) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(x, s));
  }
};

}  // namespace

GemmFn avx2_prefill_gemm(DType type) { return simd::q23_prefill_for<Avx2PrefillOps>(type); }

}  // namespace af::cpu::quant::kpacked
