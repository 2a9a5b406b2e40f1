// The K-quant packed kernels (kpacked_simd256.hpp, kpacked_q23_simd256.hpp) with AVX2's vpmaddubsw
// + vpmaddwd.
#include "backend/cpu/quant/kpacked_q23_simd256.hpp"

namespace af::cpu::quant::kpacked {
namespace {

struct Avx2Ops {
  // The scale as int32 (for the start) and as an int16 pair (for vpmaddwd).
  struct Scale {
    __m256i s32, s16;
  };
  // The high word of each lane from the shifted copy: a negative (Q6_K) scale's low word keeps
  // its sign-extended high word out.
  static Scale scale(__m256i s32) {
    return {s32, _mm256_blend_epi16(s32, _mm256_slli_epi32(s32, 16), 0xaa)};
  }
  // The scale goes into every step, so the part is already scaled: init * s to start.
  static __m256i start(__m256i init, const Scale& s) { return _mm256_mullo_epi32(init, s.s32); }
  // Quants (at most 63) times int8: a pair of products stays inside int16 (2 * 63 * 128).
  static __m256i dot(__m256i part, __m256i w, __m256i a, const Scale& s) {
    return _mm256_add_epi32(part, _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), s.s16));
  }
  static __m256i finish(__m256i sumi, __m256i part, const Scale&) {
    return _mm256_add_epi32(sumi, part);
  }
};

}  // namespace

GemmFn avx2_gemm(DType type) { return simd::gemm_with_q23_for<Avx2Ops>(type); }

}  // namespace af::cpu::quant::kpacked
