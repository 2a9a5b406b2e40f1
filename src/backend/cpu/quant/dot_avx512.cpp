// AVX-512 (no VNNI) quantized dot products: the 256-bit kernels with 32 vector registers, which
// allow a larger tile.
#include "backend/cpu/quant/dot_simd.hpp"

namespace af::cpu::quant {
namespace {

struct Avx512Ops {
  static __m256i dot(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
  }
};

}  // namespace

const QuantKernels& avx512_quant_kernels() {
  static const QuantKernels kTable = simd::make_table<Avx512Ops, 4, 4>("avx512");
  return kTable;
}

}  // namespace af::cpu::quant
