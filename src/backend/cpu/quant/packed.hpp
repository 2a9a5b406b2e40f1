#pragma once
// Weights of the 32-element block types repacked at load for AVX-512 VNNI matmuls.
//
// Rows go in groups of 16 (the last group padded with zero rows). A group's blocks are
// contiguous, block after block along k, so a decode streams each group sequentially. One packed
// block of a group holds the 16 rows' 32 elements:
//   scales: 16 fp16 (Q4_1/Q5_1: then 16 fp16 mins)
//   quants: 64-byte chunks, each "16 rows x 4 consecutive bytes" (row r in bytes 4r..4r+3), the
//     lane layout vpdpbusd multiplies against 4 broadcast activation bytes:
//     Q8_0: 8 chunks, chunk c = bytes 4c..4c+3 of each row, stored XOR 0x80 (unsigned q + 128)
//     Q4_x, Q5_x: 4 chunks of the qs bytes 4c..4c+3; low nibbles are elements 4c..4c+3, high
//       nibbles elements 16+4c..16+4c+3 (GGUF keeps element i in the low nibble of byte i and
//       element i+16 in the high one)
//   Q5_x: then 8 little-endian 64-bit masks, mask c marking the bytes (row r, element e of chunk
//     c, bit 4r+e) whose fifth bit is set; chunk c < 4 is the low-nibble chunk c, c >= 4 the
//     high-nibble chunk c - 4
// The packed size equals the GGUF size (16 * block bytes per group block).
//
// Each dot product follows the defined block-sum order (quant_kernels.hpp; the oracle is
// quant::ref::dot): per block the exact int32 sum P of q * a (q the signed value, or the unsigned
// one for types with a min), then acc = fma(dw * da, P, acc); types with a min also accm = fma(m *
// da, sum a, accm), and the result is acc + accm. The kernels get P from unsigned weights: the
// offset (8, 16 or 128) times the activation block sum is subtracted exactly in the int32
// accumulator.
#include <cstdint>

#include "af/core/dtype.hpp"

namespace af::cpu::quant::packed {

inline constexpr int kGroupRows = 16;

// True for the types with a packed layout (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0).
bool is_packable(DType type);
// Bytes of one packed block of one group (16 rows x 32 elements).
int64_t group_block_bytes(DType type);
inline int64_t group_count(int64_t n) { return (n + kGroupRows - 1) / kGroupRows; }

// Packs groups [g0, g1) of the n x k weight `w` (GGUF rows of row_bytes(type, k)) into `dst`,
// where group g0 starts. Rows at or past n are packed as zeros.
void pack_groups(DType type, const uint8_t* w, int64_t n, int64_t k, int64_t g0, int64_t g1,
                 uint8_t* dst);

// Q8_0 activation rows split for the kernels. Row i: qs + i * k (the int8 quants, 64-byte
// aligned rows when k is a multiple of 64), and per block b (nb = k / 32 blocks):
// d[i * nb + b] its scale as float, offset[i * nb + b] the int32 accumulator's start value
// (-offset(type) * sum of the block's quants), asum[i * nb + b] float(sum of the block's quants)
// (read by the types with a min).
struct Activations {
  const int8_t* qs;
  const float* d;
  const int32_t* offset;
  const float* asum;
  int64_t k;
};

// What the packed kernels add to each weight value to make it unsigned: 8 (Q4_0), 16 (Q5_0),
// 128 (Q8_0), 0 for the types with a min (their values are unsigned already).
inline int32_t weight_offset(DType type) {
  return type == DType::Q4_0 ? 8 : type == DType::Q5_0 ? 16 : type == DType::Q8_0 ? 128 : 0;
}

// Fills the per-row arrays of Activations for row `a_q8` (k / 32 GGUF Q8_0 blocks).
void split_activation_row(DType type, const uint8_t* a_q8, int64_t k, int8_t* qs, float* d,
                          int32_t* offset, float* asum);

// y[i * ldy + j] = dot(weight row j, activation row i) (+ bias[j] when bias is set) for
// i in [i0, i1) and the rows j < n of groups [g0, g1); `w` points at packed group g0.
using PackedGemmFn = void (*)(const uint8_t* w, int64_t g0, int64_t g1, int64_t n,
                              const Activations& a, int64_t i0, int64_t i1, const float* bias,
                              float* y, int64_t ldy);

// pack_groups done with AVX-512 gathers (same bytes; needs AVX-512, CPUID-checked by the caller).
using PackFn = void (*)(DType type, const uint8_t* w, int64_t n, int64_t k, int64_t g0, int64_t g1,
                        uint8_t* dst);
PackFn avx512vnni_pack(DType type);

// quantize_q8_0 of the float row x[k] (k a multiple of 32) followed by split_activation_row,
// in one AVX-512 pass with no GGUF row in between: the same bytes and values for finite input.
void quantize_split_row_avx512(DType type, const float* x, int64_t k, int8_t* qs, float* d,
                               int32_t* offset, float* asum);

// The AVX-512 VNNI kernel for a packable type (needs AVX512_VNNI, CPUID-checked by the caller).
PackedGemmFn avx512vnni_packed_gemm(DType type);

}  // namespace af::cpu::quant::packed
