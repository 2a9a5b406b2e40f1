// The 256-bit Q2_K / Q3_K prefill kernels (kpacked_q23_prefill_simd256.hpp) with AVX-VNNI's
// vpdpbusd + vpdpwssd.
#include "backend/cpu/quant/kpacked_q23_prefill_simd256.hpp"

namespace af::cpu::quant::kpacked {
namespace {

struct AvxVnniPrefillOps {
  // int32 sub-block sums; vpdpwssd against the scale in the low half (the high half zero)
  // multiplies the sum, which fits an int16, exactly.
  static int32_t start(int v) { return v; }
  static __m256i scale(__m256i s) { return s; }
  static __m256i dot(__m256i sub, __m256i w, __m256i a) {
    return _mm256_dpbusd_avx_epi32(sub, w, a);
  }
  static __m256i madd(__m256i acc, __m256i x, __m256i s) {
    return _mm256_dpwssd_avx_epi32(acc, x, s);
  }
};

}  // namespace

GemmFn avxvnni_prefill_gemm(DType type) { return simd::q23_prefill_for<AvxVnniPrefillOps>(type); }

}  // namespace af::cpu::quant::kpacked
