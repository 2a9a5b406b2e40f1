// vdpbf16ps kernels (compiled with AVX512_BF16; see src/backend/CMakeLists.txt).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "backend/cpu/kernels/transpose_avx512.hpp"
#include "backend/cpu/quant/bf16_dot.hpp"

namespace af::cpu::quant {
namespace {

// Packed tiles: MR activation rows x NG groups of 16 weight rows over `pairs` pairs of k. The
// accumulators start from zero (first k block) or from the partial sums in y, and go back to y
// (plus the bias after the last k block): float stores and loads are exact, so the k blocking
// leaves every output's accumulation order unchanged.
template <int MR, int NG>
void packed_tile(const uint32_t* w, int64_t w_group_stride, int64_t pairs, const uint16_t* xb,
                 int64_t ldx, bool first, const float* bias, __mmask16 last_mask, float* y,
                 int64_t ldy) {
  __m512 acc[MR][NG];
  const auto mask_of = [&](int c) { return c == NG - 1 ? last_mask : __mmask16(0xFFFF); };
  for (int r = 0; r < MR; ++r) {
    for (int c = 0; c < NG; ++c) {
      acc[r][c] =
          first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask_of(c), y + r * ldy + 16 * c);
    }
  }
  for (int64_t p = 0; p < pairs; ++p) {
    __m512bh wv[NG];
    for (int c = 0; c < NG; ++c) {
      wv[c] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(w + c * w_group_stride + 16 * p));
    }
    for (int r = 0; r < MR; ++r) {
      int32_t pair;
      std::memcpy(&pair, xb + r * ldx + 2 * p, 4);
      const __m512bh xv = reinterpret_cast<__m512bh>(_mm512_set1_epi32(pair));
      for (int c = 0; c < NG; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], xv, wv[c]);
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int c = 0; c < NG; ++c) {
      __m512 v = acc[r][c];
      if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask_of(c), bias + 16 * c));
      _mm512_mask_storeu_ps(y + r * ldy + 16 * c, mask_of(c), v);
    }
  }
}

using PackedTileFn = void (*)(const uint32_t*, int64_t, int64_t, const uint16_t*, int64_t, bool,
                              const float*, __mmask16, float*, int64_t);

constexpr int kTileRows = 6;    // activation rows per tile
constexpr int kTileGroups = 4;  // weight groups (64 rows) per tile
// Pairs of k per cache block: a tile's 4 groups x 128 pairs of weights (32 KiB) stay in L1
// while every activation row passes over them.
constexpr int64_t kBlockPairs = 128;

template <int MR, size_t... G>
constexpr std::array<PackedTileFn, kTileGroups> tiles_for_rows(std::index_sequence<G...>) {
  return {&packed_tile<MR, static_cast<int>(G) + 1>...};
}
template <size_t... R>
constexpr std::array<std::array<PackedTileFn, kTileGroups>, kTileRows> all_tiles(
    std::index_sequence<R...>) {
  return {tiles_for_rows<static_cast<int>(R) + 1>(std::make_index_sequence<kTileGroups>())...};
}
constexpr auto kTiles = all_tiles(std::make_index_sequence<kTileRows>());

}  // namespace

void bf16_pack_avx512(const uint16_t* w, int64_t n, int64_t k, int64_t g0, int64_t g1, int64_t p0,
                      int64_t p1, uint32_t* dst) {
  const int64_t pairs = p1 - p0;
  // Pairs [p0, vec_end) go 16 x 16 words at a time through a register transpose; the rest (a
  // short tail, an odd k's last pair) through the scalar layout function.
  const int64_t vec_end = p0 + std::max<int64_t>(0, (std::min(p1, k / 2) - p0) / 16 * 16);
  for (int64_t g = g0; g < g1; ++g) {
    uint32_t* out = dst + (g - g0) * pairs * kBf16GroupRows;
    for (int64_t p = p0; p < vec_end; p += 16) {
      __m512i r[16];
      for (int i = 0; i < 16; ++i) {
        const int64_t row = g * kBf16GroupRows + i;
        r[i] = row < n ? _mm512_loadu_si512(w + row * k + 2 * p) : _mm512_setzero_si512();
      }
      transpose16x16_epi32(r);  // r[j]: pair p + j of the 16 rows
      for (int j = 0; j < 16; ++j) {
        _mm512_storeu_si512(out + (p - p0 + j) * kBf16GroupRows, r[j]);
      }
    }
    if (vec_end < p1) {
      // The scalar function writes whole groups of (p1 - vec_end) pairs: pack into scratch.
      alignas(64) uint32_t tail[16 * kBf16GroupRows];
      for (int64_t p = vec_end; p < p1; p += 16) {
        const int64_t q1 = std::min<int64_t>(p + 16, p1);
        bf16_pack(w, n, k, g, g + 1, p, q1, tail);
        std::memcpy(out + (p - p0) * kBf16GroupRows, tail, (q1 - p) * kBf16GroupRows * 4);
      }
    }
  }
}

void bf16_packed_gemm(const uint32_t* packed, const uint16_t* rows, int64_t n, int64_t k,
                      int64_t g0, int64_t g1, const uint16_t* xb, int64_t ldx, int64_t i0,
                      int64_t i1, const float* bias, float* y, int64_t ldy) {
  const int64_t all_pairs = bf16_pairs(k);
  // Scratch for a tile's weights packed on the fly (no prepacked weight).
  alignas(64) uint32_t scratch[kTileGroups * kBf16GroupRows * kBlockPairs];
  for (int64_t g = g0; g < g1; g += kTileGroups) {
    const int ng = static_cast<int>(std::min<int64_t>(kTileGroups, g1 - g));
    const int64_t last_rows = std::min<int64_t>(kBf16GroupRows, n - (g + ng - 1) * kBf16GroupRows);
    const auto last_mask = static_cast<__mmask16>((1u << last_rows) - 1u);
    for (int64_t p0 = 0; p0 < all_pairs; p0 += kBlockPairs) {
      const int64_t pairs = std::min(kBlockPairs, all_pairs - p0);
      const uint32_t* w;
      int64_t stride;
      if (packed) {
        stride = all_pairs * kBf16GroupRows;
        w = packed + (g - g0) * stride + p0 * kBf16GroupRows;
      } else {
        bf16_pack_avx512(rows, n, k, g, g + ng, p0, p0 + pairs, scratch);
        stride = pairs * kBf16GroupRows;
        w = scratch;
      }
      const bool first = p0 == 0;
      const float* tile_bias =
          bias && p0 + pairs == all_pairs ? bias + g * kBf16GroupRows : nullptr;
      for (int64_t i = i0; i < i1; i += kTileRows) {
        const int mr = static_cast<int>(std::min<int64_t>(kTileRows, i1 - i));
        kTiles[mr - 1][ng - 1](w, stride, pairs, xb + i * ldx + 2 * p0, ldx, first, tile_bias,
                               last_mask, y + i * ldy + g * kBf16GroupRows, ldy);
      }
    }
  }
}

void bf16_round_row(const float* x, uint16_t* out, int64_t k) {
  int64_t i = 0;
  for (; i + 32 <= k; i += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
    _mm512_storeu_si512(out + i, reinterpret_cast<__m512i>(v));
  }
  for (; i < k; i += 16) {
    const int64_t n = k - i < 16 ? k - i : 16;
    const auto mask = static_cast<__mmask16>((1u << n) - 1u);
    const __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, x + i));
    _mm256_mask_storeu_epi16(out + i, mask, reinterpret_cast<__m256i>(v));
  }
}

}  // namespace af::cpu::quant
