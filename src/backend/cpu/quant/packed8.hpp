#pragma once
// Q4_0 and Q8_0 weights repacked at load for the 256-bit int8 kernels of CPUs without AVX-512
// (AVX2, AVX-VNNI): the layout of quant/packed.hpp with 8-row groups and 32-byte chunks, so one
// ymm holds 8 rows' sums and a product needs no horizontal reduction.
//
// Rows go in groups of 8 (the last group padded with zero rows). A group's blocks are
// contiguous, block after block along k. One packed block holds the 8 rows' 32 elements:
//   scales: 8 fp16 (row r at bytes 2r..2r+1)
//   quants: 32-byte chunks, each "8 rows x 4 consecutive bytes" (row r in bytes 4r..4r+3):
//     Q4_0: 4 chunks of the qs bytes 4c..4c+3; low nibbles are elements 4c..4c+3, high nibbles
//       elements 16+4c..16+4c+3 (GGUF's nibble order)
//     Q8_0: 8 chunks, chunk c = elements 4c..4c+3, the signed bytes as stored
// The packed size equals the GGUF size (8 * block bytes per group block).
//
// The kernels follow the defined block-sum order of quant_kernels.hpp (oracle: quant::ref::dot)
// on the activations of packed::Activations (split Q8_0 rows): per block the exact int32 sum P
// of value * a, then acc = fma(dw * da, float(P), acc).
#include <cstdint>

#include "af/core/dtype.hpp"
#include "backend/cpu/quant/packed.hpp"

namespace af::cpu::quant::packed8 {

inline constexpr int kGroupRows = 8;

// True for the types with this layout (Q4_0, Q8_0).
bool is_packable(DType type);
// Bytes of one packed block of one group (8 rows x 32 elements).
int64_t group_block_bytes(DType type);
inline int64_t group_count(int64_t n) { return (n + kGroupRows - 1) / kGroupRows; }

// Packs groups [g0, g1) of the n x k weight `w` (GGUF rows of row_bytes(type, k)) into `dst`,
// where group g0 starts. Rows at or past n are packed as zeros.
void pack_groups(DType type, const uint8_t* w, int64_t n, int64_t k, int64_t g0, int64_t g1,
                 uint8_t* dst);

// y[i * ldy + j] = dot(weight row j, activation row i) (+ bias[j] when bias is set) for i in
// [i0, i1) and the rows j < n of groups [g0, g1); `w` points at packed group g0. `a` is split for
// the weight's type (packed::split_activation_row).
using GemmFn = void (*)(const uint8_t* w, int64_t g0, int64_t g1, int64_t n,
                        const packed::Activations& a, int64_t i0, int64_t i1, const float* bias,
                        float* y, int64_t ldy);
GemmFn avx2_gemm(DType type);     // needs AVX2 + FMA + F16C (CPUID-checked by the caller)
GemmFn avxvnni_gemm(DType type);  // needs AVX-VNNI as well

}  // namespace af::cpu::quant::packed8
