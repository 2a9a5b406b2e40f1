// AVX-512 VNNI quantized dot products: vpdpbusd does the u8 x s8 4-byte group dot in one step.
// GCC 12.2's avx512fintrin.h self-initialises the _mm512_undefined_* placeholders (GCC PR 105593),
// which -Wuninitialized reports wherever they are inlined; those values are never read.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "backend/cpu/quant/dot_simd.hpp"
#include "backend/cpu/quant/kquant_gemm.hpp"

namespace af::cpu::quant {
namespace {

struct VnniOps {
  static constexpr bool kNoSaturation = true;
  static __m256i dot(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(acc, u, s); }
};

QuantKernels make_vnni_table() {
  QuantKernels t = simd::make_table<VnniOps, 4, 4>("avx512vnni");
  // Prefill K-quants: weight panels unpacked once for all activation rows (kquant_gemm.hpp).
  t.dot[kSlotQ4_K] =
      simd::kquant_panel_dot<simd::K4Panel<false>, simd::k4_dot512<VnniOps, false, 4, 4>>;
  t.dot[kSlotQ5_K] =
      simd::kquant_panel_dot<simd::K4Panel<true>, simd::k4_dot512<VnniOps, true, 4, 4>>;
  t.dot[kSlotQ6_K] = simd::kquant_panel_dot<simd::Q6KPanel, simd::q6_k_dot512<VnniOps, 4, 4>>;
  return t;
}

}  // namespace

const QuantKernels& avx512vnni_quant_kernels() {
  static const QuantKernels kTable = make_vnni_table();
  return kTable;
}

}  // namespace af::cpu::quant
