// AVX2 quantized dot products: u8 x s8 via vpmaddubsw + vpmaddwd.
#include "backend/cpu/quant/dot_simd.hpp"

namespace af::cpu::quant {
namespace {

struct Avx2Ops {
  // vpmaddubsw saturates pairs above 32767: callers keep u <= 31 (offset decoders) or use
  // |w| x sign(a, w) for Q8_0 (at most 2 * 128 * 127).
  static constexpr bool kNoSaturation = false;
  static __m256i dot(__m256i acc, __m256i u, __m256i s) {
    return _mm256_add_epi32(acc,
                            _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
  }
};

}  // namespace

const QuantKernels& avx2_quant_kernels() {
  static const QuantKernels kTable = simd::make_table<Avx2Ops, 4, 2>("avx2");
  return kTable;
}

}  // namespace af::cpu::quant
