#pragma once
// Opt-in BF16 x BF16 matmul with AVX512_BF16's vdpbf16ps: activations are rounded to bf16 first,
// so results differ from the exact float32 path (bf16 weights widened to f32) by that rounding.
// Only call after cpu_has_avx512_vnni_bf16().
#include <cstdint>

namespace af::cpu::quant {

// out[k] = x[k] rounded to bf16 (nearest even).
void bf16_round_row(const float* x, uint16_t* out, int64_t k);
// y[i * ldy + j] = Σ_t xb[i * k + t] * w[j * k + t] for i < m, j in [n_begin, n_end).
void bf16_dot_rows(int64_t k, const uint16_t* w, int64_t n_begin, int64_t n_end, const uint16_t* xb,
                   int64_t m, float* y, int64_t ldy);

namespace ref {
// The scalar oracle: the same products of bf16 values, accumulated in double.
void bf16_dot_rows(int64_t k, const uint16_t* w, int64_t n_begin, int64_t n_end, const uint16_t* xb,
                   int64_t m, float* y, int64_t ldy);
}  // namespace ref

}  // namespace af::cpu::quant
