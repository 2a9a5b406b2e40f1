#pragma once
// Opt-in BF16 x BF16 matmul with AVX512_BF16's vdpbf16ps: activations are rounded to bf16 first,
// so results differ from the exact float32 path (bf16 weights widened to f32) by that rounding.
// Only call the kernels after cpu_has_avx512_vnni_bf16().
//
// Packed layout (made at load by bf16_pack, or tile by tile during a prefill): rows go in
// groups of 16 (the last group padded with zero rows) and k is padded to an even length kp. A
// group holds, for each pair p < kp / 2, 64 bytes: row r's elements 2p and 2p + 1 in bytes
// 4r..4r+3, the lane layout vdpbf16ps multiplies against one broadcast activation pair. A group
// is a tile of `pairs` such chunks, so one vdpbf16ps feeds 16 outputs and no horizontal sum is
// needed. Every output is one float lane accumulated pair after pair along k, in the same order
// whatever the tiling or thread count.
#include <cstdint>

namespace af::cpu::quant {

inline constexpr int kBf16GroupRows = 16;
inline int64_t bf16_groups(int64_t n) { return (n + kBf16GroupRows - 1) / kBf16GroupRows; }
inline int64_t bf16_pairs(int64_t k) { return (k + 1) / 2; }
// Bytes of the packed form of an n x k bf16 weight.
inline int64_t bf16_packed_bytes(int64_t n, int64_t k) {
  return bf16_groups(n) * kBf16GroupRows * bf16_pairs(k) * 4;
}

// Packs pairs [p0, p1) of groups [g0, g1) of the n x k row-major bf16 weight `w` into `dst`:
// group g0 first, each group (p1 - p0) chunks of 16 words. Rows at or past n, and the element
// past an odd k, are zero.
void bf16_pack(const uint16_t* w, int64_t n, int64_t k, int64_t g0, int64_t g1, int64_t p0,
               int64_t p1, uint32_t* dst);

// bf16_pack with AVX-512 register transposes (the same words).
void bf16_pack_avx512(const uint16_t* w, int64_t n, int64_t k, int64_t g0, int64_t g1, int64_t p0,
                      int64_t p1, uint32_t* dst);

// out[k] = x[k] rounded to bf16 (nearest even).
void bf16_round_row(const float* x, uint16_t* out, int64_t k);

// The packed matmul: y[i * ldy + j] = Σ_t xb[i * ldx + t] * w[j][t] (+ bias[j]) for i in
// [i0, i1) and the rows j < n of groups [g0, g1). xb rows hold kp = 2 * bf16_pairs(k) elements
// (a zero after an odd k) at stride ldx. The weight is `packed` (bf16_pack of all pairs, group
// g0 first) or, when that is null, the row-major `rows`, packed here a cache tile at a time.
void bf16_packed_gemm(const uint32_t* packed, const uint16_t* rows, int64_t n, int64_t k,
                      int64_t g0, int64_t g1, const uint16_t* xb, int64_t ldx, int64_t i0,
                      int64_t i1, const float* bias, float* y, int64_t ldy);

namespace ref {
// The scalar oracle: the same products of bf16 values, accumulated in double.
void bf16_dot_rows(int64_t k, const uint16_t* w, int64_t n_begin, int64_t n_end, const uint16_t* xb,
                   int64_t m, float* y, int64_t ldy);
}  // namespace ref

}  // namespace af::cpu::quant
