#pragma once
// Dense weights (f32, f16, bf16) repacked at load for the AVX-512 matmul, so that one vector
// holds 16 output columns and a product needs no horizontal sum.
//
// Rows go in groups of 16 (the last group padded with zero rows). A group is a run of 64-byte
// chunks along k:
//   f32: chunk c = element c of the 16 rows (row r in bytes 4r..4r+3), k chunks;
//   f16, bf16: chunk c = elements 2c and 2c + 1: bytes 0..31 element 2c of rows 0..15, bytes
//     32..63 element 2c + 1 (zero past an odd k), (k + 1) / 2 chunks.
//
// The packed matmul's order is the oracle's (ref::packed_order_matmul): each output is one
// float accumulated along k in order, acc = fma(x[t], w[t], acc) from 0, then + bias. It is a
// different order from the unpacked kernels (lanes over k, then a horizontal sum), so a model
// uses one or the other for all of its calls: the prepared weight for every batch size.
#include <cstdint>

#include "backend/cpu/kernels/kernel_table.hpp"

namespace af::cpu::dense {

inline constexpr int kGroupRows = 16;
inline int64_t group_count(int64_t n) { return (n + kGroupRows - 1) / kGroupRows; }
// 64-byte chunks per group.
inline int64_t group_chunks(WeightType wt, int64_t k) {
  return wt == WeightType::kF32 ? k : (k + 1) / 2;
}
inline int64_t packed_bytes(WeightType wt, int64_t n, int64_t k) {
  return group_count(n) * group_chunks(wt, k) * 64;
}

// Packs chunks [c0, c1) of groups [g0, g1) of the row-major n x k weight `w` into dst (group g0
// first, c1 - c0 chunks per group).
void pack(WeightType wt, const void* w, int64_t n, int64_t k, int64_t g0, int64_t g1, int64_t c0,
          int64_t c1, uint8_t* dst);
// The same bytes with AVX-512 register transposes (needs AVX-512 F/BW).
void pack_avx512(WeightType wt, const void* w, int64_t n, int64_t k, int64_t g0, int64_t g1,
                 int64_t c0, int64_t c1, uint8_t* dst);

// y[i * ldy + j] = x[i] · w[j] (+ bias[j]) in the packed order, for rows i in [i0, i1) of
// x[., k] and the rows j < n of groups [g0, g1); `packed` points at group g0 (all chunks).
// Needs AVX-512 F/BW.
void packed_matmul_avx512(WeightType wt, const uint8_t* packed, int64_t n, int64_t k, int64_t g0,
                          int64_t g1, const float* x, int64_t i0, int64_t i1, const float* bias,
                          float* y, int64_t ldy);

namespace ref {
// y[m, n] = x[m, k] · w[n, k]ᵀ (+ bias) on the row-major weight, in the packed order.
void packed_order_matmul(WeightType wt, const void* w, int64_t n, int64_t k, const float* x,
                         int64_t m, const float* bias, float* y);
}  // namespace ref

}  // namespace af::cpu::dense
