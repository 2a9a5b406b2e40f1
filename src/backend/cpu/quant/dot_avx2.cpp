// AVX2 quantized dot products: u8 x s8 via vpmaddubsw + vpmaddwd.
#include "backend/cpu/quant/dot_simd.hpp"

namespace af::cpu::quant {
namespace {

struct Avx2Ops {
  // Pairs never saturate vpmaddubsw: |u| <= 128 and |s| <= 127 give at most 32512.
  static __m256i dot(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
  }
};

}  // namespace

const QuantKernels& avx2_quant_kernels() {
  static const QuantKernels kTable = simd::make_table<Avx2Ops, 4, 2>("avx2");
  return kTable;
}

}  // namespace af::cpu::quant
