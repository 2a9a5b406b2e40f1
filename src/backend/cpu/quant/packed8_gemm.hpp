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
#include <utility>

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

// One MR x NG tile over all nb blocks: activation rows i0..i0+MR, groups at w (group_stride
// apart), output columns j0.. (n columns in all).
template <class Ops, DType Type, int MR, int NG>
void tile(const uint8_t* w, int64_t group_stride, int64_t nb, const packed::Activations& a,
          int64_t i0, const float* bias, float* y, int64_t ldy, int64_t j0, int64_t n) {
  constexpr bool kQ8 = Type == DType::Q8_0;
  constexpr int64_t kBlockBytes = kQ8 ? 272 : 144;
  constexpr int kQsOff = 2 * kGroupRows;
  __m256 acc[MR][NG];
#pragma GCC unroll 4
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 4
    for (int g = 0; g < NG; ++g) acc[r][g] = _mm256_setzero_ps();
  }
  const int8_t* aq[MR];
  const float* ad[MR];
  const int32_t* aoff[MR];
#pragma GCC unroll 4
  for (int r = 0; r < MR; ++r) {
    aq[r] = a.qs + (i0 + r) * a.k;
    ad[r] = a.d + (i0 + r) * nb;
    aoff[r] = a.offset + (i0 + r) * nb;
  }
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* wb[NG];
#pragma GCC unroll 4
    for (int g = 0; g < NG; ++g) wb[g] = w + g * group_stride + b * kBlockBytes;
    __m256i isum[MR][NG];
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      const __m256i start =
          kQ8 && !Ops::kQ8UsesOffset ? _mm256_setzero_si256() : _mm256_set1_epi32(aoff[r][b]);
#pragma GCC unroll 4
      for (int g = 0; g < NG; ++g) isum[r][g] = start;
    }
    if constexpr (!kQ8) {
      const __m256i low4 = _mm256_set1_epi8(0x0F);
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) {
        __m256i lo[NG], hi[NG];
#pragma GCC unroll 4
        for (int g = 0; g < NG; ++g) {
          const __m256i raw =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb[g] + kQsOff + 32 * c));
          lo[g] = _mm256_and_si256(raw, low4);
          hi[g] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
        }
#pragma GCC unroll 4
        for (int r = 0; r < MR; ++r) {
          const __m256i alo = broadcast4(aq[r] + b * 32 + 4 * c);
          const __m256i ahi = broadcast4(aq[r] + b * 32 + 16 + 4 * c);
#pragma GCC unroll 4
          for (int g = 0; g < NG; ++g) {
            isum[r][g] = Ops::nibbles(isum[r][g], lo[g], alo, hi[g], ahi);
          }
        }
      }
    } else {
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) {
        typename Ops::Q8 q[NG];
#pragma GCC unroll 4
        for (int g = 0; g < NG; ++g) {
          q[g] = Ops::q8_chunk(
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb[g] + kQsOff + 32 * c)));
        }
#pragma GCC unroll 4
        for (int r = 0; r < MR; ++r) {
          const __m256i av = broadcast4(aq[r] + b * 32 + 4 * c);
#pragma GCC unroll 4
          for (int g = 0; g < NG; ++g) isum[r][g] = Ops::q8(isum[r][g], q[g], av);
        }
      }
    }
    __m256 dw[NG];
#pragma GCC unroll 4
    for (int g = 0; g < NG; ++g) {
      dw[g] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb[g])));
    }
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      const __m256 da = _mm256_set1_ps(ad[r][b]);
#pragma GCC unroll 4
      for (int g = 0; g < NG; ++g) {
        // dw * da is a product of two halves: exact, as in the reference.
        acc[r][g] =
            _mm256_fmadd_ps(_mm256_mul_ps(dw[g], da), _mm256_cvtepi32_ps(isum[r][g]), acc[r][g]);
      }
    }
  }
#pragma GCC unroll 4
  for (int g = 0; g < NG; ++g) {
    const int64_t j = j0 + g * kGroupRows;
    const int64_t valid = std::min<int64_t>(kGroupRows, n - j);
    const __m256i keep = lane_mask(valid);
    const __m256 bv = bias ? _mm256_maskload_ps(bias + j, keep) : _mm256_setzero_ps();
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      const __m256 v = bias ? _mm256_add_ps(acc[r][g], bv) : acc[r][g];
      _mm256_maskstore_ps(y + (i0 + r) * ldy + j, keep, v);
    }
  }
}

using TileFn = void (*)(const uint8_t*, int64_t, int64_t, const packed::Activations&, int64_t,
                        const float*, float*, int64_t, int64_t, int64_t);

// Register budget (16 ymm): MR int sums + MR float accumulators + the unpacked weights and
// broadcasts: tiles of 4 rows x 1 group. The weights come from a tile packed into L2 during the
// call (CpuBackend::plan_packed8), so no prefetching.
constexpr int kPrefillRows = 4;

template <class Ops, DType Type>
void gemm(const uint8_t* w, int64_t g0, int64_t g1, int64_t n, const packed::Activations& a,
          int64_t i0, int64_t i1, const float* bias, float* y, int64_t ldy) {
  const int64_t nb = a.k / 32;
  const int64_t group_stride = nb * group_block_bytes(Type);
  static constexpr std::array<TileFn, kPrefillRows> kTiles = {
      &tile<Ops, Type, 1, 1>, &tile<Ops, Type, 2, 1>, &tile<Ops, Type, 3, 1>,
      &tile<Ops, Type, 4, 1>};
  for (int64_t g = g0; g < g1; ++g) {
    for (int64_t i = i0; i < i1; i += kPrefillRows) {
      const int64_t mr = std::min<int64_t>(kPrefillRows, i1 - i);
      kTiles[static_cast<size_t>(mr - 1)](w + (g - g0) * group_stride, group_stride, nb, a, i, bias,
                                          y, ldy, g * kGroupRows, n);
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
