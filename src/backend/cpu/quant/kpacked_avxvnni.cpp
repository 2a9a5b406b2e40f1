// The K-quant packed kernels (kpacked_simd256.hpp, kpacked_q23_simd256.hpp) with AVX-VNNI's
// vpdpbusd.
#include "backend/cpu/quant/kpacked_q23_simd256.hpp"

namespace af::cpu::quant::kpacked {
namespace {

struct AvxVnniOps {
  struct Scale {
    __m256i s32;
  };
  static Scale scale(__m256i s32) { return {s32}; }
  static __m256i start(__m256i init, const Scale&) { return init; }
  static __m256i dot(__m256i part, __m256i w, __m256i a, const Scale&) {
    return _mm256_dpbusd_avx_epi32(part, w, a);
  }
  // One multiply per sub-block and row, after its 32 (or 16) products are summed.
  static __m256i finish(__m256i sumi, __m256i part, const Scale& s) {
    return _mm256_add_epi32(sumi, _mm256_mullo_epi32(part, s.s32));
  }
};

}  // namespace

GemmFn avxvnni_gemm(DType type) { return simd::gemm_with_q23_for<AvxVnniOps>(type); }

}  // namespace af::cpu::quant::kpacked
