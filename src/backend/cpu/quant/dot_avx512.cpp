// AVX-512 (no VNNI) quantized dot products: the 256-bit kernels with 32 vector registers, which
// allow a larger tile.
#include "backend/cpu/quant/dot_simd.hpp"

namespace af::cpu::quant {
namespace {

struct Avx512Ops {
  // vpmaddubsw saturates pairs above 32767: callers keep u <= 31 (offset decoders) or use
  // |w| x sign(a, w) for Q8_0 (at most 2 * 128 * 127).
  static constexpr bool kNoSaturation = false;
  static __m256i dot(__m256i acc, __m256i u, __m256i s) {
    return _mm256_add_epi32(acc,
                            _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
  }
};

}  // namespace

const QuantKernels& avx512_quant_kernels() {
  static const QuantKernels kTable = simd::make_table<Avx512Ops, 4, 4>("avx512");
  return kTable;
}

}  // namespace af::cpu::quant
