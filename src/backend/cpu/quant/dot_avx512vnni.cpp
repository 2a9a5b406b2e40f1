// AVX-512 VNNI quantized dot products: vpdpbusd does the u8 x s8 4-byte group dot in one step.
// GCC 12.2's avx512fintrin.h self-initialises the _mm512_undefined_* placeholders (GCC PR 105593),
// which -Wuninitialized reports wherever they are inlined; those values are never read.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "backend/cpu/quant/dot_simd.hpp"

namespace af::cpu::quant {
namespace {

struct VnniOps {
  static constexpr bool kNoSaturation = true;
  static __m256i dot(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(acc, u, s); }
};

}  // namespace

const QuantKernels& avx512vnni_quant_kernels() {
  static const QuantKernels kTable = simd::make_table<VnniOps, 4, 4>("avx512vnni");
  return kTable;
}

}  // namespace af::cpu::quant
