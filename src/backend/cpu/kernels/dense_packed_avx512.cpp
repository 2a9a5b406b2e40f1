// The AVX-512 packed dense matmul and its repacking (dense_packed.hpp), compiled with the
// AVX-512 F/BW/VL/DQ flags (src/backend/CMakeLists.txt).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "backend/cpu/kernels/dense_packed.hpp"
#include "backend/cpu/kernels/transpose_avx512.hpp"

namespace af::cpu::dense {
namespace {

// The 16 weights of one element of a chunk, widened to float (exact for all three types).
template <WeightType WT>
__m512 weights(const uint8_t* chunk, int half) {
  if constexpr (WT == WeightType::kF32) {
    return _mm512_loadu_ps(chunk);
  } else {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(chunk + 32 * half));
    if constexpr (WT == WeightType::kF16) {
      return _mm512_cvtph_ps(h);
    } else {
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
  }
}

// MR activation rows x NG groups over elements [0, n_elems) of a k block (x and w start at the
// block). The accumulators start from zero (first block) or from the partial sums in y and go
// back to y (plus the bias after the last block): exact float stores and loads, so the blocking
// leaves each output's order of fmas unchanged.
template <WeightType WT, int MR, int NG>
void tile(const uint8_t* w, int64_t group_stride, int64_t n_elems, const float* x, int64_t ldx,
          bool first, const float* bias, __mmask16 last_mask, float* y, int64_t ldy) {
  constexpr int kPerChunk = WT == WeightType::kF32 ? 1 : 2;
  __m512 acc[MR][NG];
  const auto mask_of = [&](int c) { return c == NG - 1 ? last_mask : __mmask16(0xFFFF); };
  for (int r = 0; r < MR; ++r) {
    for (int c = 0; c < NG; ++c) {
      acc[r][c] =
          first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask_of(c), y + r * ldy + 16 * c);
    }
  }
  // One k element: x[r][t] times the chunk's weights `half` (0 or 1), for all MR x NG outputs.
  const auto step = [&](const uint8_t* chunk, int half, const float* xt)
      __attribute__((always_inline)) {
    // NG weight vectors and one broadcast live beside the accumulators: 24 + 4 + 1 zmm, so
    // nothing spills.
    __m512 wv[NG];
    for (int c = 0; c < NG; ++c) wv[c] = weights<WT>(chunk + c * group_stride, half);
    for (int r = 0; r < MR; ++r) {
      const __m512 xv = _mm512_set1_ps(xt[r * ldx]);
      for (int c = 0; c < NG; ++c) acc[r][c] = _mm512_fmadd_ps(xv, wv[c], acc[r][c]);
    }
  };
  const int64_t whole = n_elems / kPerChunk;
  for (int64_t c = 0; c < whole; ++c) {
    for (int h = 0; h < kPerChunk; ++h) step(w + c * 64, h, x + c * kPerChunk + h);
  }
  if (whole * kPerChunk < n_elems) step(w + whole * 64, 0, x + whole * kPerChunk);  // odd k
  for (int r = 0; r < MR; ++r) {
    for (int c = 0; c < NG; ++c) {
      __m512 v = acc[r][c];
      if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask_of(c), bias + 16 * c));
      _mm512_mask_storeu_ps(y + r * ldy + 16 * c, mask_of(c), v);
    }
  }
}

using TileFn = void (*)(const uint8_t*, int64_t, int64_t, const float*, int64_t, bool, const float*,
                        __mmask16, float*, int64_t);

constexpr int kTileRows = 6;    // 6 x 4 accumulators + 6 broadcasts + 1 weight vector: 31 zmm
constexpr int kTileGroups = 4;  // 64 output columns
// k elements per cache block: the tile's 4 groups of a block (256 KiB) stay in L2 while every
// activation row passes over them. Long blocks measured best (about 8% over 32 KiB blocks kept
// in L1, on Zen 5): each block costs a reload and store of the 24 accumulators, and L2 feeds the
// 128 weight bytes per 24 fmas easily. Even, so 16-bit chunks never straddle blocks.
template <WeightType WT>
constexpr int64_t kBlockElems = WT == WeightType::kF32 ? 1024 : 2048;

template <WeightType WT, int MR, size_t... G>
constexpr std::array<TileFn, kTileGroups> tiles_for_rows(std::index_sequence<G...>) {
  return {&tile<WT, MR, static_cast<int>(G) + 1>...};
}
template <WeightType WT, size_t... R>
constexpr std::array<std::array<TileFn, kTileGroups>, kTileRows> all_tiles(
    std::index_sequence<R...>) {
  return {tiles_for_rows<WT, static_cast<int>(R) + 1>(std::make_index_sequence<kTileGroups>())...};
}
template <WeightType WT>
constexpr auto kTiles = all_tiles<WT>(std::make_index_sequence<kTileRows>());

template <WeightType WT>
void matmul(const uint8_t* packed, int64_t n, int64_t k, int64_t g0, int64_t g1, const float* x,
            int64_t i0, int64_t i1, const float* bias, float* y, int64_t ldy) {
  constexpr int64_t kPerChunk = WT == WeightType::kF32 ? 1 : 2;
  const int64_t group_stride = group_chunks(WT, k) * 64;
  for (int64_t g = g0; g < g1; g += kTileGroups) {
    const int ng = static_cast<int>(std::min<int64_t>(kTileGroups, g1 - g));
    const int64_t last_rows = std::min<int64_t>(kGroupRows, n - (g + ng - 1) * kGroupRows);
    const auto last_mask = static_cast<__mmask16>((1u << last_rows) - 1u);
    for (int64_t t0 = 0; t0 < k; t0 += kBlockElems<WT>) {
      const int64_t n_elems = std::min(kBlockElems<WT>, k - t0);
      const uint8_t* w = packed + (g - g0) * group_stride + t0 / kPerChunk * 64;
      const float* tile_bias = bias && t0 + n_elems == k ? bias + g * kGroupRows : nullptr;
      for (int64_t i = i0; i < i1; i += kTileRows) {
        const int mr = static_cast<int>(std::min<int64_t>(kTileRows, i1 - i));
        kTiles<WT>[mr - 1][ng - 1](w, group_stride, n_elems, x + i * k + t0, k, t0 == 0, tile_bias,
                                   last_mask, y + i * ldy + g * kGroupRows, ldy);
      }
    }
  }
}

}  // namespace

void packed_matmul_avx512(WeightType wt, const uint8_t* packed, int64_t n, int64_t k, int64_t g0,
                          int64_t g1, const float* x, int64_t i0, int64_t i1, const float* bias,
                          float* y, int64_t ldy) {
  switch (wt) {
    case WeightType::kF32:
      return matmul<WeightType::kF32>(packed, n, k, g0, g1, x, i0, i1, bias, y, ldy);
    case WeightType::kF16:
      return matmul<WeightType::kF16>(packed, n, k, g0, g1, x, i0, i1, bias, y, ldy);
    case WeightType::kBF16:
      return matmul<WeightType::kBF16>(packed, n, k, g0, g1, x, i0, i1, bias, y, ldy);
  }
}

void pack_avx512(WeightType wt, const void* w, int64_t n, int64_t k, int64_t g0, int64_t g1,
                 int64_t c0, int64_t c1, uint8_t* dst) {
  const int64_t chunks = c1 - c0;
  const bool wide = wt == WeightType::kF32;
  // A transpose covers 16 chunks: 16 floats, or 16 pairs of 16-bit elements, of each row.
  // Chunks [c0, vec_end) lie wholly inside the rows; the rest go through the scalar layout.
  const int64_t whole = wide ? k : k / 2;
  const int64_t vec_end = c0 + std::max<int64_t>(0, (std::min(c1, whole) - c0) / 16 * 16);
  const int64_t elem_bytes = wide ? 4 : 2;
  const auto* src = static_cast<const uint8_t*>(w);
  // Words (element 2c, element 2c + 1) of 16 rows -> 16 elements 2c, then 16 elements 2c + 1.
  alignas(64) static constexpr uint16_t kSplit[32] = {0,  2,  4,  6,  8,  10, 12, 14, 16, 18, 20,
                                                      22, 24, 26, 28, 30, 1,  3,  5,  7,  9,  11,
                                                      13, 15, 17, 19, 21, 23, 25, 27, 29, 31};
  const __m512i split = _mm512_load_si512(kSplit);
  for (int64_t g = g0; g < g1; ++g) {
    uint8_t* out = dst + (g - g0) * chunks * 64;
    for (int64_t c = c0; c < vec_end; c += 16) {
      __m512i r[16];
      const int64_t first_elem = wide ? c : 2 * c;
      for (int i = 0; i < 16; ++i) {
        const int64_t row = g * kGroupRows + i;
        r[i] = row < n ? _mm512_loadu_si512(src + (row * k + first_elem) * elem_bytes)
                       : _mm512_setzero_si512();
      }
      transpose16x16_epi32(r);  // r[j]: the 16 rows' word j
      for (int j = 0; j < 16; ++j) {
        const __m512i chunk = wide ? r[j] : _mm512_permutexvar_epi16(split, r[j]);
        _mm512_storeu_si512(out + (c - c0 + j) * 64, chunk);
      }
    }
    for (int64_t c = vec_end; c < c1; c += 16) {
      alignas(64) uint8_t tail[16 * 64];
      const int64_t e = std::min<int64_t>(c + 16, c1);
      pack(wt, w, n, k, g, g + 1, c, e, tail);
      std::memcpy(out + (c - c0) * 64, tail, static_cast<size_t>((e - c) * 64));
    }
  }
}

}  // namespace af::cpu::dense
