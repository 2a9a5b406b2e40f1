// AVX-VNNI quantized dot products: the 256-bit kernels of dot_simd.hpp with the VEX-encoded
// vpdpbusd, for CPUs that have it without AVX-512 (no saturation, so Q8_0 takes the w + 128
// decoder as on AVX-512 VNNI; 16 vector registers, so the AVX2 tile shape).
#include "backend/cpu/quant/dot_simd.hpp"

namespace af::cpu::quant {
namespace {

struct AvxVnniOps {
  static constexpr bool kNoSaturation = true;
  static __m256i dot(__m256i acc, __m256i u, __m256i s) {
    return _mm256_dpbusd_avx_epi32(acc, u, s);
  }
};

}  // namespace

const QuantKernels& avxvnni_quant_kernels() {
  static const QuantKernels kTable = simd::make_table<AvxVnniOps, 4, 2>("avxvnni");
  return kTable;
}

}  // namespace af::cpu::quant
