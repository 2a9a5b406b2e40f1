#pragma once
// Dense matmul y[m, n] = x[m, k] · w[n, k]ᵀ over vector traits V (see simd_common.hpp; include
// only from ISA files). Every output element is one lane-wise dot product over k (full vectors,
// then the zero-padded tail) reduced by V::hsum, whatever tile computes it, so results do not
// depend on how columns were split across threads.
#include "backend/cpu/kernels/simd_common.hpp"

namespace af::cpu {
namespace {

// The weight vector at element offset `off` of w (element type WT), widened to f32 in registers.
template <class V, WeightType WT>
inline typename V::F load_w(const void* w, int64_t off) {
  if constexpr (WT == WeightType::kF32) {
    return V::load(static_cast<const float*>(w) + off);
  } else if constexpr (WT == WeightType::kF16) {
    return V::load_f16(static_cast<const uint16_t*>(w) + off);
  } else {
    return V::load_bf16(static_cast<const uint16_t*>(w) + off);
  }
}

template <class V, WeightType WT>
inline typename V::F load_w_partial(const void* w, int64_t off, int n) {
  if constexpr (WT == WeightType::kF32) {
    return V::load_partial(static_cast<const float*>(w) + off, n);
  } else if constexpr (WT == WeightType::kF16) {
    return V::load_f16_partial(static_cast<const uint16_t*>(w) + off, n);
  } else {
    return V::load_bf16_partial(static_cast<const uint16_t*>(w) + off, n);
  }
}

// One MR x NR block of outputs: x rows x[0..MR) (row stride k), weight rows w[j0 .. j0 + NR),
// y rows y[0..MR) (row stride n), columns j0 .. j0 + NR. Each weight vector is loaded (and
// converted) once and used by all MR x rows.
// kPrefetch: decode tiles (MR == 1) also prefetch the same offsets of the next NR weight rows.
// Decode rows are short (k = 896 halves are 28 cache lines), too short for the hardware stream
// prefetchers to train on each of the NR interleaved row streams; the hint keeps the next tile's
// lines in flight so memory stays busy. Prefetches never fault, so reading past the last row is
// harmless.
template <class V, WeightType WT, int MR, int NR, bool kPrefetch = false>
inline void matmul_tile(const float* x, int64_t k, const void* w, int64_t j0, const float* bias,
                        int64_t n, float* y) {
  using F = typename V::F;
  constexpr int L = V::kLanes;
  F acc[MR][NR];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 16
    for (int c = 0; c < NR; ++c) acc[r][c] = V::zero();
  }
  const int64_t kv = k - k % L;
  // x vectors are loaded first and each weight vector is consumed right after its load, so only
  // MR + 1 registers hold inputs (8 decode rows of converted bf16 would not fit 16 ymm otherwise).
  constexpr int64_t kElemBytes = WT == WeightType::kF32 ? 4 : 2;
  // Weight elements per 64-byte cache line; one prefetch per row and line.
  constexpr int64_t kLineElems = 64 / kElemBytes;
  const char* next_tile = static_cast<const char*>(w) + (j0 + NR) * k * kElemBytes;
  for (int64_t i = 0; i < kv; i += L) {
    if constexpr (kPrefetch) {
      if (i % kLineElems == 0) {
#pragma GCC unroll 16
        for (int c = 0; c < NR; ++c) __builtin_prefetch(next_tile + (c * k + i) * kElemBytes, 0, 3);
      }
    }
    F xv[MR];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) xv[r] = V::load(x + r * k + i);
#pragma GCC unroll 16
    for (int c = 0; c < NR; ++c) {
      const F wv = load_w<V, WT>(w, (j0 + c) * k + i);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) acc[r][c] = V::fmadd(xv[r], wv, acc[r][c]);
    }
  }
  if (kv < k) {
    const int rem = static_cast<int>(k - kv);
    F xv[MR];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) xv[r] = V::load_partial(x + r * k + kv, rem);
#pragma GCC unroll 16
    for (int c = 0; c < NR; ++c) {
      const F wv = load_w_partial<V, WT>(w, (j0 + c) * k + kv, rem);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) acc[r][c] = V::fmadd(xv[r], wv, acc[r][c]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 16
    for (int c = 0; c < NR; ++c) {
      float s = V::hsum(acc[r][c]);
      if (bias) s += bias[j0 + c];
      y[r * n + j0 + c] = s;
    }
  }
}

// Columns [n_begin, n_end) of y[m, n] = x[m, k] · w[n, k]ᵀ (+ bias[n]).
template <class V, WeightType WT>
void matmul(const float* x, int64_t m, int64_t k, const void* w, const float* bias, int64_t n,
            int64_t n_begin, int64_t n_end, float* y) {
  if (m == 1) {
    // Decode: memory bound on w, so stream kDecodeRows weight rows at once, sharing x loads and
    // keeping enough independent FMA chains in flight.
    constexpr int D = V::kDecodeRows;
    int64_t j = n_begin;
    for (; j + D <= n_end; j += D) matmul_tile<V, WT, 1, D, true>(x, k, w, j, bias, n, y);
    for (; j < n_end; ++j) matmul_tile<V, WT, 1, 1>(x, k, w, j, bias, n, y);
    return;
  }
  constexpr int MR = V::kTileRows;
  constexpr int NR = V::kTileCols;
  // Rows in blocks so the x rows one weight block meets stay in L2 (48 rows of k = 4864 floats
  // are 930 KB); each weight block is reused by every row of the block.
  constexpr int64_t kRowBlock = MR * 8;
  for (int64_t r0 = 0; r0 < m; r0 += kRowBlock) {
    const int64_t r1 = min_i64(m, r0 + kRowBlock);
    int64_t j = n_begin;
    for (; j + NR <= n_end; j += NR) {
      int64_t r = r0;
      for (; r + MR <= r1; r += MR)
        matmul_tile<V, WT, MR, NR>(x + r * k, k, w, j, bias, n, y + r * n);
      for (; r < r1; ++r) matmul_tile<V, WT, 1, NR>(x + r * k, k, w, j, bias, n, y + r * n);
    }
    for (; j < n_end; ++j) {
      int64_t r = r0;
      for (; r + MR <= r1; r += MR)
        matmul_tile<V, WT, MR, 1>(x + r * k, k, w, j, bias, n, y + r * n);
      for (; r < r1; ++r) matmul_tile<V, WT, 1, 1>(x + r * k, k, w, j, bias, n, y + r * n);
    }
  }
}

// dst[n] = float(src[n]) for an embedding row; exact for all three types.
template <class V, WeightType WT>
void to_f32(const void* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + V::kLanes <= n; i += V::kLanes) V::store(dst + i, load_w<V, WT>(src, i));
  if (i < n) {
    const int rem = static_cast<int>(n - i);
    V::store_partial(dst + i, load_w_partial<V, WT>(src, i, rem), rem);
  }
}

}  // namespace
}  // namespace af::cpu
