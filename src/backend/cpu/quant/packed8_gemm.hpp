#pragma once
// The 256-bit GEMM on the 8-row packed layout of packed8.hpp, over Ops (AVX2 or AVX-VNNI).
// Include only from *_avx2.cpp / *_avxvnni.cpp, which are compiled for those ISAs.
//
// Ops supplies the u8 x s8 steps:
//   nibbles(acc, lo, alo, hi, ahi): acc + the 4-byte group sums of lo * alo + hi * ahi
//   Q8 q8_chunk(w): a Q8_0 chunk (signed bytes) made ready for q8(acc, chunk, a), which adds the
//     4-byte group sums of w * a
//   kQ8UsesOffset: Q8_0 sums start from the split offset (-128 * block sum: the chunk became
//     w + 128) rather than from 0
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "backend/cpu/quant/packed8.hpp"

namespace af::cpu::quant::packed8::simd {

inline __m256i broadcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// Lanes below `valid` (1..8) set.
inline __m256i lane_mask(int64_t valid) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(valid)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// One tile of MR activation rows x one group (8 outputs) over all nb blocks: rows i0..i0+MR,
// the group at w, output columns j0.. (n columns in all). Registers (16 ymm): MR int sums, MR
// float accumulators, the unpacked weights and broadcasts.
template <class Ops, DType Type, int MR>
void tile(const uint8_t* w, int64_t nb, const packed::Activations& a, int64_t i0, const float* bias,
          float* y, int64_t ldy, int64_t j0, int64_t n) {
  constexpr bool kQ8 = Type == DType::Q8_0;
  constexpr int64_t kBlockBytes = kQ8 ? 272 : 144;
  constexpr int kQsOff = 2 * kGroupRows;
  __m256 acc[MR];
  const int8_t* aq[MR];
  const float* ad[MR];
  const int32_t* aoff[MR];
#pragma GCC unroll 4
  for (int r = 0; r < MR; ++r) {
    acc[r] = _mm256_setzero_ps();
    aq[r] = a.qs + (i0 + r) * a.k;
    ad[r] = a.d + (i0 + r) * nb;
    aoff[r] = a.offset + (i0 + r) * nb;
  }
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* wb = w + b * kBlockBytes;
    __m256i isum[MR];
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      isum[r] = kQ8 && !Ops::kQ8UsesOffset ? _mm256_setzero_si256() : _mm256_set1_epi32(aoff[r][b]);
    }
    if constexpr (!kQ8) {
      const __m256i low4 = _mm256_set1_epi8(0x0F);
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) {
        const __m256i raw =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + kQsOff + 32 * c));
        const __m256i lo = _mm256_and_si256(raw, low4);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
#pragma GCC unroll 4
        for (int r = 0; r < MR; ++r) {
          const __m256i alo = broadcast4(aq[r] + b * 32 + 4 * c);
          const __m256i ahi = broadcast4(aq[r] + b * 32 + 16 + 4 * c);
          isum[r] = Ops::nibbles(isum[r], lo, alo, hi, ahi);
        }
      }
    } else {
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) {
        const typename Ops::Q8 q = Ops::q8_chunk(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + kQsOff + 32 * c)));
#pragma GCC unroll 4
        for (int r = 0; r < MR; ++r) {
          isum[r] = Ops::q8(isum[r], q, broadcast4(aq[r] + b * 32 + 4 * c));
        }
      }
    }
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb)));
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      // dw * da is a product of two halves: exact, as in the reference.
      acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(ad[r][b])),
                               _mm256_cvtepi32_ps(isum[r]), acc[r]);
    }
  }
  const __m256i keep = lane_mask(std::min<int64_t>(kGroupRows, n - j0));
  const __m256 bv = bias ? _mm256_maskload_ps(bias + j0, keep) : _mm256_setzero_ps();
#pragma GCC unroll 4
  for (int r = 0; r < MR; ++r) {
    _mm256_maskstore_ps(y + (i0 + r) * ldy + j0, keep, bias ? _mm256_add_ps(acc[r], bv) : acc[r]);
  }
}

using TileFn = void (*)(const uint8_t*, int64_t, const packed::Activations&, int64_t, const float*,
                        float*, int64_t, int64_t, int64_t);

// Rows per tile. The weights come from a tile packed into L2 during the call
// (CpuBackend::plan_packed8), so no prefetching.
constexpr int kTileRows = 4;

template <class Ops, DType Type>
void gemm(const uint8_t* w, int64_t g0, int64_t g1, int64_t n, const packed::Activations& a,
          int64_t i0, int64_t i1, const float* bias, float* y, int64_t ldy) {
  const int64_t nb = a.k / 32;
  const int64_t group_stride = nb * group_block_bytes(Type);
  static constexpr std::array<TileFn, kTileRows> kTiles = {
      &tile<Ops, Type, 1>, &tile<Ops, Type, 2>, &tile<Ops, Type, 3>, &tile<Ops, Type, 4>};
  for (int64_t g = g0; g < g1; ++g) {
    for (int64_t i = i0; i < i1; i += kTileRows) {
      const int64_t mr = std::min<int64_t>(kTileRows, i1 - i);
      kTiles[static_cast<size_t>(mr - 1)](w + (g - g0) * group_stride, nb, a, i, bias, y, ldy,
                                          g * kGroupRows, n);
    }
  }
}

template <class Ops>
GemmFn gemm_for(DType type) {
  switch (type) {
    case DType::Q4_0:
      return &gemm<Ops, DType::Q4_0>;
    case DType::Q8_0:
      return &gemm<Ops, DType::Q8_0>;
    default:
      group_block_bytes(type);  // throws for types without the layout
      return nullptr;
  }
}

}  // namespace af::cpu::quant::packed8::simd
