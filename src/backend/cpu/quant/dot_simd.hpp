#pragma once
// 256-bit integer dot-product kernels, shared by the AVX2, AVX-512 and AVX-512 VNNI builds
// (included only from *_avx2.cpp / *_avx512.cpp / *_avx512vnni.cpp). `Ops` supplies the one
// ISA-specific step, the u8 x s8 dot of each 4-byte group into 8 int32 lanes; all integer sums
// are exact and the float steps follow the order defined in quant_kernels.hpp, so every ISA
// returns the scalar reference's bits. Ops::dot(acc, u, s) adds the u8 x s8 4-byte group sums
// to the 8 int32 lanes of acc.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "backend/cpu/quant/blocks.hpp"
#include "backend/cpu/quant/quant_kernels.hpp"

namespace af::cpu::quant::simd {

using af::quant::BlockQ4_0;
using af::quant::BlockQ4_1;
using af::quant::BlockQ4_K;
using af::quant::BlockQ5_0;
using af::quant::BlockQ5_1;
using af::quant::BlockQ5_K;
using af::quant::BlockQ6_K;
using af::quant::BlockQ8_0;
using af::quant::BlockQ8_K;
using af::quant::kQK;
using af::quant::kQKK;

inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m128i load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

inline int hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}

// 16 nibbles -> 32 bytes: low nibbles (elements 0..15) then high nibbles (16..31).
// The 16 bytes go to both halves (a broadcast load); the high half is shifted right by 4 (bits
// shifted in from the neighbouring byte fall outside the mask).
inline __m256i unpack_nibbles(const uint8_t* qs) {
  const __m256i q = _mm256_broadcastsi128_si256(load128(qs));
  const __m256i shifted = _mm256_srlv_epi64(q, _mm256_set_epi64x(4, 4, 0, 0));
  return _mm256_and_si256(shifted, _mm256_set1_epi8(0x0F));
}

// Bit j of the 32-bit mask -> 0x10 in byte j.
inline __m256i expand_high_bits(const uint8_t* qh) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101,
                                         0x0000000000000000);
  __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), shuf);
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
  return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

// Adds 0x10 to byte j of the nibbles where bit j of the 32-bit mask is set (AVX-512BW: one masked
// add).
inline __m256i with_high_bits(__m256i nibbles, const uint8_t* qh) {
#if defined(__AVX512BW__) && defined(__AVX512VL__)
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  return _mm256_mask_add_epi8(nibbles, static_cast<__mmask32>(bits), nibbles,
                              _mm256_set1_epi8(0x10));
#else
  return _mm256_or_si256(nibbles, expand_high_bits(qh));
#endif
}

// The 32 values of a legacy block as unsigned bytes u with value = u - kOffset (the types with a
// min add it separately). Signed types use the offset so that vpmaddubsw / vpdpbusd (u8 x s8)
// apply: the lane sums become dot(u, a) - kOffset * sum(a), exact in int32. kNarrowLanes: every
// value is within [-16, 31], so a 4-element lane sum and the sum of two lanes fit in int16
// (8 * 31 * 127 < 32768), which lets the tiles reduce lanes with vpackssdw + vpmaddwd (see
// narrow_sums_epi32).
struct Q4_0Decoder {
  using Block = BlockQ4_0;
  static constexpr int kOffsetShift = 3;  // offset 8
  static constexpr bool kHasMin = false;
  static constexpr bool kNarrowLanes = true;
  static __m256i values(const Block& b) { return unpack_nibbles(b.qs); }
  static uint16_t min_half(const Block&) { return 0; }
};
struct Q4_1Decoder {
  using Block = BlockQ4_1;
  static constexpr int kOffsetShift = -1;  // no offset
  static constexpr bool kHasMin = true;
  static constexpr bool kNarrowLanes = true;
  static __m256i values(const Block& b) { return unpack_nibbles(b.qs); }
  static uint16_t min_half(const Block& b) { return b.m; }
};
struct Q5_0Decoder {
  using Block = BlockQ5_0;
  static constexpr int kOffsetShift = 4;  // offset 16
  static constexpr bool kHasMin = false;
  static constexpr bool kNarrowLanes = true;
  static __m256i values(const Block& b) { return with_high_bits(unpack_nibbles(b.qs), b.qh); }
  static uint16_t min_half(const Block&) { return 0; }
};
struct Q5_1Decoder {
  using Block = BlockQ5_1;
  static constexpr int kOffsetShift = -1;
  static constexpr bool kHasMin = true;
  static constexpr bool kNarrowLanes = true;
  static __m256i values(const Block& b) { return with_high_bits(unpack_nibbles(b.qs), b.qh); }
  static uint16_t min_half(const Block& b) { return b.m; }
};
// Q8_0 as w + 128: only for vpdpbusd, which does not saturate (vpmaddubsw pairs could).
struct Q8_0OffsetDecoder {
  using Block = BlockQ8_0;
  static constexpr int kOffsetShift = 7;  // offset 128
  static constexpr bool kHasMin = false;
  static constexpr bool kNarrowLanes = false;
  static __m256i values(const Block& b) {
    return _mm256_xor_si256(load256(b.qs), _mm256_set1_epi8(static_cast<char>(0x80)));
  }
  static uint16_t min_half(const Block&) { return 0; }
};
// Q8_0 without VNNI: the raw int8 values, multiplied as |w| x sign(a, w), which keeps every
// vpmaddubsw pair within int16 (at most 2 * 128 * 127).
struct Q8_0SignDecoder {
  using Block = BlockQ8_0;
  static constexpr int kOffsetShift = -1;
  static constexpr bool kHasMin = false;
  static constexpr bool kNarrowLanes = false;
  static __m256i values(const Block& b) { return load256(b.qs); }
  static uint16_t min_half(const Block&) { return 0; }
};

inline __m256 broadcast_half(uint16_t h) {
  return _mm256_cvtph_ps(_mm_set1_epi16(static_cast<int16_t>(h)));
}

// Decode tiles (MR == 1) hint the same block of a later tile's NR weight rows into the cache
// while they work on this one. A decode matmul streams every weight once, and its rows are short
// (k = 896 is 952 bytes of Q8_0, 504 of Q4_0), too short for the hardware stream prefetchers to
// train on NR interleaved row streams, so without the hint each tile waits on memory latency.
// The hint runs at least kPrefetchBytes ahead (whole tiles; one tile of short rows is not far
// enough ahead to cover the latency). Prefetches never fault: hinting past the last row is
// harmless.
inline constexpr int64_t kPrefetchBytes = 4096;
template <int NR>
inline int64_t prefetch_offset(int64_t w_stride) {
  const int64_t tile_bytes = NR * w_stride;
  return (1 + kPrefetchBytes / tile_bytes) * tile_bytes;
}
template <int MR, int NR, int64_t kBlockBytes>
inline void prefetch_ahead(const uint8_t* w, int64_t w_stride, int64_t ahead, int64_t b) {
  if constexpr (MR == 1) {
    const uint8_t* next = w + ahead + b * kBlockBytes;
    for (int c = 0; c < NR; ++c) {
      for (int64_t off = 0; off < kBlockBytes; off += 64) {
        __builtin_prefetch(next + c * w_stride + off, 0, 3);
      }
    }
  }
}

// Exact sums of four 8-lane int32 vectors: {sum v0, sum v1, sum v2, sum v3}.
inline __m128i sum4_epi32(__m256i v0, __m256i v1, __m256i v2, __m256i v3) {
  // Lanes 0..3 and 4..7 of each input summed separately: {v0, v1, v2, v3 | v0, v1, v2, v3}.
  const __m256i q = _mm256_hadd_epi32(_mm256_hadd_epi32(v0, v1), _mm256_hadd_epi32(v2, v3));
  return _mm_add_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
}

// Exact sums of eight 8-lane int32 vectors, lane i the sum of v[i].
inline __m256i sum8_epi32(const __m256i* v) {
  const __m256i q0 =
      _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
  const __m256i q1 =
      _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
  // {low halves of v0..v3 | low halves of v4..v7} + {high halves of v0..v3 | high of v4..v7}.
  return _mm256_add_epi32(_mm256_blend_epi32(q0, q1, 0xF0),
                          _mm256_permute2x128_si256(q0, q1, 0x21));
}

// Exact sums of the first N (1, 2, 4 or 8) vectors of v, lane i the sum of v[i] (lanes past N 0).
template <int N>
inline __m256i sums_epi32(const __m256i* v) {
  static_assert(N == 1 || N == 2 || N == 4 || N == 8);
  if constexpr (N == 8) {
    return sum8_epi32(v);
  } else {
    const __m256i zero = _mm256_setzero_si256();
    return _mm256_zextsi128_si256(
        sum4_epi32(v[0], N > 1 ? v[1] : zero, N > 2 ? v[2] : zero, N > 2 ? v[3] : zero));
  }
}

// Exact sums of the first N (1, 2, 4 or 8) vectors of v when every lane, and every sum of two
// lanes, fits in int16 (kNarrowLanes): lane i the sum of v[i]. Pairs of vectors are packed to
// int16 (exact) and pair-summed by vpmaddwd, twice, which takes fewer shuffles than vphaddd.
template <int N>
inline __m256i narrow_sums_epi32(const __m256i* v) {
  static_assert(N == 1 || N == 2 || N == 4 || N == 8);
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i zero = _mm256_setzero_si256();
  const auto pair_sums = [&](__m256i x, __m256i y) {
    return _mm256_madd_epi16(_mm256_packs_epi32(x, y), ones);
  };
  // 128-bit half h of each: the four-lane sums of half h of v[0..3] (of v[4..7]).
  const __m256i z0 =
      pair_sums(pair_sums(v[0], N > 1 ? v[1] : zero), N > 2 ? pair_sums(v[2], v[3]) : zero);
  if constexpr (N == 8) {
    const __m256i z1 = pair_sums(pair_sums(v[4], v[5]), pair_sums(v[6], v[7]));
    return _mm256_add_epi32(_mm256_blend_epi32(z0, z1, 0xF0),
                            _mm256_permute2x128_si256(z0, z1, 0x21));
  } else {
    return _mm256_zextsi128_si256(
        _mm_add_epi32(_mm256_castsi256_si128(z0), _mm256_extracti128_si256(z0, 1)));
  }
}

// The floats of N <= 8 halves in lanes 0..N-1 (the others 0), converted together.
template <int N>
inline __m256 halves_to_floats(const uint16_t* h) {
  static_assert(N >= 1 && N <= 8);
  uint64_t lo = 0, hi = 0;
  for (int i = 0; i < N; ++i) (i < 4 ? lo : hi) |= static_cast<uint64_t>(h[i]) << (16 * (i % 4));
  return _mm256_cvtph_ps(_mm_set_epi64x(static_cast<int64_t>(hi), static_cast<int64_t>(lo)));
}

// Lane t of an output group of legacy_tile: column t % NR of row t / NR (clamped to the group's
// rows, for the unused lanes of a group smaller than eight).
template <int NR>
inline __m256i group_lane_columns() {
  return _mm256_setr_epi32(0 % NR, 1 % NR, 2 % NR, 3 % NR, 4 % NR, 5 % NR, 6 % NR, 7 % NR);
}
template <int NR, int kGroupRows>
inline __m256i group_lane_rows() {
  constexpr auto row = [](int t) { return t / NR < kGroupRows ? t / NR : kGroupRows - 1; };
  return _mm256_setr_epi32(row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7));
}

// MR activation rows x NR weight rows over the whole row. Per block, each output's 8 lane sums
// are reduced to its exact block sum, eight outputs (or the whole tile, up to four) at a time, so
// the float work of the defined order is one convert and one fma per eight outputs.
template <class Ops, class Dec, int MR, int NR>
void legacy_tile(int64_t k, const uint8_t* w, int64_t w_stride, const uint8_t* a, int64_t a_stride,
                 float* y, int64_t ldy) {
  using Block = typename Dec::Block;
  constexpr bool kSign = std::is_same_v<Dec, Q8_0SignDecoder>;
  constexpr int kOutputs = MR * NR;
  static_assert(kOutputs <= 4 || (kOutputs % 8 == 0 && 8 % NR == 0));
  // A group is eight outputs (8 / NR whole rows of the tile) or, for small tiles, all of them.
  constexpr int kGroupRows = kOutputs <= 4 ? MR : 8 / NR;
  constexpr int kGroupOutputs = kGroupRows * NR;
  constexpr int kGroups = MR / kGroupRows;
  const __m256i lane_column = group_lane_columns<NR>();
  const __m256i lane_row = group_lane_rows<NR, kGroupRows>();
  __m256 acc[kGroups], acc_min[kGroups];
  for (int g = 0; g < kGroups; ++g) acc[g] = acc_min[g] = _mm256_setzero_ps();
  const int64_t nb = k / kQK;
  const int64_t ahead = prefetch_offset<NR>(w_stride);
  for (int64_t b = 0; b < nb; ++b) {
    prefetch_ahead<MR, NR, sizeof(Block)>(w, w_stride, ahead, b);
    __m256i wu[NR], wv[NR];
    uint16_t dw_half[NR], mw_half[NR];
    for (int c = 0; c < NR; ++c) {
      const Block& blk = reinterpret_cast<const Block*>(w + c * w_stride)[b];
      wv[c] = Dec::values(blk);
      wu[c] = kSign ? _mm256_abs_epi8(wv[c]) : wv[c];
      dw_half[c] = blk.d;
      mw_half[c] = Dec::min_half(blk);
    }
    const __m256 dw = _mm256_permutevar8x32_ps(halves_to_floats<NR>(dw_half), lane_column);
    for (int g = 0; g < kGroups; ++g) {
      __m256i prod[kGroupOutputs], lane_sums[kGroupRows];
      uint16_t da_half[kGroupRows];
      for (int gr = 0; gr < kGroupRows; ++gr) {
        const int r = g * kGroupRows + gr;
        const BlockQ8_0& ab = reinterpret_cast<const BlockQ8_0*>(a + r * a_stride)[b];
        const __m256i av = load256(ab.qs);
        da_half[gr] = ab.d;
        __m256i base = _mm256_setzero_si256();
        if constexpr (Dec::kOffsetShift >= 0 || Dec::kHasMin) {
          lane_sums[gr] = Ops::dot(_mm256_setzero_si256(), _mm256_set1_epi8(1), av);
          if constexpr (Dec::kOffsetShift >= 0) {
            base = _mm256_sub_epi32(base, _mm256_slli_epi32(lane_sums[gr], Dec::kOffsetShift));
          }
        }
        for (int c = 0; c < NR; ++c) {
          prod[gr * NR + c] = kSign ? Ops::dot(base, wu[c], _mm256_sign_epi8(av, wv[c]))
                                    : Ops::dot(base, wu[c], av);
        }
      }
      const __m256i sums = Dec::kNarrowLanes ? narrow_sums_epi32<kGroupOutputs>(prod)
                                             : sums_epi32<kGroupOutputs>(prod);
      const __m256 da =
          MR == 1 ? broadcast_half(da_half[0])
                  : _mm256_permutevar8x32_ps(halves_to_floats<kGroupRows>(da_half), lane_row);
      // dw * da is a product of two halves: exact, as in the reference.
      acc[g] = _mm256_fmadd_ps(_mm256_mul_ps(dw, da), _mm256_cvtepi32_ps(sums), acc[g]);
      if constexpr (Dec::kHasMin) {
        const __m256 mw = _mm256_permutevar8x32_ps(halves_to_floats<NR>(mw_half), lane_column);
        // Each output's activation sum, in its lane.
        const __m256i suma =
            _mm256_permutevar8x32_epi32(sums_epi32<kGroupRows>(lane_sums), lane_row);
        acc_min[g] = _mm256_fmadd_ps(_mm256_mul_ps(mw, da), _mm256_cvtepi32_ps(suma), acc_min[g]);
      }
    }
  }
  for (int g = 0; g < kGroups; ++g) {
    alignas(32) float out[8];
    _mm256_store_ps(out, Dec::kHasMin ? _mm256_add_ps(acc[g], acc_min[g]) : acc[g]);
    for (int t = 0; t < kGroupOutputs; ++t) {
      y[(g * kGroupRows + t / NR) * ldy + t % NR] = out[t];
    }
  }
}

#if defined(__AVX512VNNI__)
// 16 nibble bytes of each of two blocks -> [low nibbles 0, high nibbles 0, low 1, high 1].
inline __m512i unpack_nibbles_pair(const uint8_t* qs0, const uint8_t* qs1) {
  const __m512i q =
      _mm512_mask_broadcast_i32x4(_mm512_broadcast_i32x4(load128(qs0)), 0xFF00, load128(qs1));
  const __m512i shifted = _mm512_srlv_epi64(q, _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0));
  return _mm512_and_si512(shifted, _mm512_set1_epi8(0x0F));
}

// The values of two blocks, block 0 in the low 256 bits: Dec::values of each, built with fewer
// steps where the layout allows.
template <class Dec>
inline __m512i values_pair(const typename Dec::Block& b0, const typename Dec::Block& b1) {
  if constexpr (std::is_same_v<Dec, Q8_0OffsetDecoder>) {
    const __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(load256(b0.qs)), load256(b1.qs), 1);
    return _mm512_xor_si512(q, _mm512_set1_epi8(static_cast<char>(0x80)));
  } else if constexpr (std::is_same_v<Dec, Q4_0Decoder> || std::is_same_v<Dec, Q4_1Decoder>) {
    return unpack_nibbles_pair(b0.qs, b1.qs);
  } else {
    static_assert(std::is_same_v<Dec, Q5_0Decoder> || std::is_same_v<Dec, Q5_1Decoder>);
    uint32_t h0, h1;
    std::memcpy(&h0, b0.qh, 4);
    std::memcpy(&h1, b1.qh, 4);
    const __mmask64 bits = static_cast<__mmask64>(h0) | (static_cast<__mmask64>(h1) << 32);
    const __m512i n = unpack_nibbles_pair(b0.qs, b1.qs);
    return _mm512_mask_add_epi8(n, bits, n, _mm512_set1_epi8(0x10));
  }
}

// Exact sums of eight rows' 8-lane dots held two rows per register (p[i] = {row 2i, row 2i + 1})
// when lanes are narrow (see narrow_sums_epi32), in the order rows 0, 2, 4, 6, 1, 3, 5, 7.
inline __m256i narrow_row_sums512(const __m512i* p) {
  const __m512i ones = _mm512_set1_epi16(1);
  const auto pair_sums = [&](__m512i x, __m512i y) {
    return _mm512_madd_epi16(_mm512_packs_epi32(x, y), ones);
  };
  // 128-bit lane j of z: the four-lane sums of lane j of p[0..3]; lanes 0 and 1 hold the two
  // halves of rows 0, 2, 4, 6, lanes 2 and 3 those of rows 1, 3, 5, 7.
  const __m512i z = pair_sums(pair_sums(p[0], p[1]), pair_sums(p[2], p[3]));
  const __m512i halves = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
  return _mm256_add_epi32(_mm512_castsi512_si256(halves), _mm512_extracti64x4_epi64(halves, 1));
}

// Exact sums of eight rows' 8-lane dots held two rows per register (p[i] = {row 2i, row 2i + 1}),
// in row order: two rounds of pair sums across two registers (even lanes + odd lanes), then the
// last pair within each 64-bit lane.
inline __m256i row_sums512(const __m512i* p) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const auto pair_sums = [&](__m512i x, __m512i y) {
    return _mm512_add_epi32(_mm512_permutex2var_epi32(x, even, y),
                            _mm512_permutex2var_epi32(x, odd, y));
  };
  // Two lanes per row, rows in order.
  const __m512i z = pair_sums(pair_sums(p[0], p[1]), pair_sums(p[2], p[3]));
  return _mm512_cvtepi64_epi32(_mm512_add_epi32(z, _mm512_srli_epi64(z, 32)));
}

// The decode (MR == 1) legacy tile with two weight rows per 512-bit register: row c in the low
// 256 bits, row c + 1 in the high, so the int8 dot runs once per two rows; per block the eight
// rows' lane sums are reduced to their exact block sums together, and their scales are converted
// and multiplied by the activation scale together, so the float work of the defined order is one
// convert and one fma per eight rows.
template <class Dec, int NR>
void legacy_row_tile512(int64_t k, const uint8_t* w, int64_t w_stride, const uint8_t* a, int64_t,
                        float* y, int64_t) {
  static_assert(NR % 8 == 0);
  using Block = typename Dec::Block;
  // Narrow lanes come out in the order of narrow_row_sums512: the rows' scales are gathered in
  // that order, and the results put back.
  constexpr bool kNarrow = Dec::kNarrowLanes;
  constexpr int kRowAt[8] = {0, 2, 4, 6, 1, 3, 5, 7};
  __m256 acc[NR / 8], acc_min[NR / 8];
  for (int g = 0; g < NR / 8; ++g) acc[g] = acc_min[g] = _mm256_setzero_ps();
  const auto* act = reinterpret_cast<const BlockQ8_0*>(a);
  const int64_t nb = k / kQK;
  const int64_t ahead = prefetch_offset<NR>(w_stride);
  for (int64_t b = 0; b < nb; ++b) {
    prefetch_ahead<1, NR, sizeof(Block)>(w, w_stride, ahead, b);
    const __m256i av = load256(act[b].qs);
    const __m512i av2 = _mm512_broadcast_i64x4(av);
    const __m256 da = broadcast_half(act[b].d);
    __m512i base = _mm512_setzero_si512();
    __m256 suma = _mm256_setzero_ps();
    if constexpr (Dec::kOffsetShift >= 0 || Dec::kHasMin) {
      const __m256i lane_sums =
          _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), av);
      if constexpr (Dec::kOffsetShift >= 0) {
        base = _mm512_broadcast_i64x4(_mm256_sub_epi32(
            _mm256_setzero_si256(), _mm256_slli_epi32(lane_sums, Dec::kOffsetShift)));
      }
      if constexpr (Dec::kHasMin) suma = _mm256_set1_ps(static_cast<float>(hsum_epi32(lane_sums)));
    }
    for (int g = 0; g < NR; g += 8) {
      const Block* blk[8];
      uint16_t d_half[8], m_half[8];
      for (int c = 0; c < 8; ++c) {
        blk[c] = reinterpret_cast<const Block*>(w + (g + c) * w_stride) + b;
      }
      for (int l = 0; l < 8; ++l) {
        const Block& row = *blk[kNarrow ? kRowAt[l] : l];
        d_half[l] = row.d;
        m_half[l] = Dec::min_half(row);
      }
      __m512i two_rows[4];
      for (int p = 0; p < 4; ++p) {
        two_rows[p] =
            _mm512_dpbusd_epi32(base, values_pair<Dec>(*blk[2 * p], *blk[2 * p + 1]), av2);
      }
      __m256i sums;
      if constexpr (kNarrow) {
        sums = narrow_row_sums512(two_rows);
      } else {
        sums = row_sums512(two_rows);
      }
      // dw * da is a product of two halves: exact, as in the reference.
      acc[g / 8] = _mm256_fmadd_ps(_mm256_mul_ps(halves_to_floats<8>(d_half), da),
                                   _mm256_cvtepi32_ps(sums), acc[g / 8]);
      if constexpr (Dec::kHasMin) {
        acc_min[g / 8] =
            _mm256_fmadd_ps(_mm256_mul_ps(halves_to_floats<8>(m_half), da), suma, acc_min[g / 8]);
      }
    }
  }
  // Lane l holds row kRowAt[l] (narrow) or row l.
  const __m256i lane_of_row = kNarrow ? _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)
                                      : _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int g = 0; g < NR / 8; ++g) {
    const __m256 result = Dec::kHasMin ? _mm256_add_ps(acc[g], acc_min[g]) : acc[g];
    _mm256_storeu_ps(y + 8 * g, _mm256_permutevar8x32_ps(result, lane_of_row));
  }
}

// The full (prefill) legacy tile of the VNNI table, MR activation rows x 4 weight rows: the
// weight rows two per 512-bit register as in legacy_row_tile512, so each pair of activation rows
// takes four vpdpbusd and its eight outputs one 512-bit reduction. Lane t of a group holds the
// output of activation row t / 4 of the pair and weight row t % 4.
template <class Dec, int MR, int NR>
void legacy_tile512(int64_t k, const uint8_t* w, int64_t w_stride, const uint8_t* a,
                    int64_t a_stride, float* y, int64_t ldy) {
  static_assert(MR % 2 == 0 && NR == 4);
  using Block = typename Dec::Block;
  constexpr int kGroups = MR / 2;
  const __m256i lane_column = group_lane_columns<4>();
  const __m256i lane_row = group_lane_rows<4, 2>();
  // narrow_row_sums512's order (outputs 0, 2, 4, 6, 1, 3, 5, 7) back to output order.
  const __m256i output_order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  __m256 acc[kGroups], acc_min[kGroups];
  for (int g = 0; g < kGroups; ++g) acc[g] = acc_min[g] = _mm256_setzero_ps();
  const int64_t nb = k / kQK;
  for (int64_t b = 0; b < nb; ++b) {
    const Block* blk[4];
    uint16_t dw_half[4], mw_half[4];
    for (int c = 0; c < 4; ++c) {
      blk[c] = reinterpret_cast<const Block*>(w + c * w_stride) + b;
      dw_half[c] = blk[c]->d;
      mw_half[c] = Dec::min_half(*blk[c]);
    }
    const __m512i wv[2] = {values_pair<Dec>(*blk[0], *blk[1]), values_pair<Dec>(*blk[2], *blk[3])};
    const __m256 dw = _mm256_permutevar8x32_ps(halves_to_floats<4>(dw_half), lane_column);
    for (int g = 0; g < kGroups; ++g) {
      __m512i prod[4];
      __m256i lane_sums[2];
      uint16_t da_half[2];
      for (int gr = 0; gr < 2; ++gr) {
        const BlockQ8_0& ab = reinterpret_cast<const BlockQ8_0*>(a + (2 * g + gr) * a_stride)[b];
        const __m256i av = load256(ab.qs);
        const __m512i av2 = _mm512_broadcast_i64x4(av);
        da_half[gr] = ab.d;
        __m512i base = _mm512_setzero_si512();
        if constexpr (Dec::kOffsetShift >= 0 || Dec::kHasMin) {
          lane_sums[gr] = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), av);
          if constexpr (Dec::kOffsetShift >= 0) {
            base = _mm512_broadcast_i64x4(_mm256_sub_epi32(
                _mm256_setzero_si256(), _mm256_slli_epi32(lane_sums[gr], Dec::kOffsetShift)));
          }
        }
        prod[2 * gr] = _mm512_dpbusd_epi32(base, wv[0], av2);
        prod[2 * gr + 1] = _mm512_dpbusd_epi32(base, wv[1], av2);
      }
      const __m256i sums = Dec::kNarrowLanes
                               ? _mm256_permutevar8x32_epi32(narrow_row_sums512(prod), output_order)
                               : row_sums512(prod);
      const __m256 da = _mm256_permutevar8x32_ps(halves_to_floats<2>(da_half), lane_row);
      // dw * da is a product of two halves: exact, as in the reference.
      acc[g] = _mm256_fmadd_ps(_mm256_mul_ps(dw, da), _mm256_cvtepi32_ps(sums), acc[g]);
      if constexpr (Dec::kHasMin) {
        const __m256 mw = _mm256_permutevar8x32_ps(halves_to_floats<4>(mw_half), lane_column);
        const __m256i suma = _mm256_permutevar8x32_epi32(sums_epi32<2>(lane_sums), lane_row);
        acc_min[g] = _mm256_fmadd_ps(_mm256_mul_ps(mw, da), _mm256_cvtepi32_ps(suma), acc_min[g]);
      }
    }
  }
  for (int g = 0; g < kGroups; ++g) {
    alignas(32) float out[8];
    _mm256_store_ps(out, Dec::kHasMin ? _mm256_add_ps(acc[g], acc_min[g]) : acc[g]);
    for (int t = 0; t < 8; ++t) y[(2 * g + t / 4) * ldy + t % 4] = out[t];
  }
}
#endif

// Both totals of a K-quant super-block from their lane vectors: {sum(a), sum(b)}.
inline void hsum2_epi32(__m256i a, __m256i b, int* sa, int* sb) {
  const __m256i h = _mm256_hadd_epi32(a, b);  // a01 a23 b01 b23 | a45 a67 b45 b67
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
  s = _mm_hadd_epi32(s, s);  // a, b, a, b
  *sa = _mm_cvtsi128_si32(s);
  *sb = _mm_extract_epi32(s, 1);
}

// Q4_K's eight 6-bit scales and mins, unpacked with 32-bit masks (the layout of
// af::quant::k4_scale_min): scale j is byte j of sc, min j byte j of mn.
struct K4Scales {
  uint8_t sc[8];
  uint8_t mn[8];
  explicit K4Scales(const uint8_t* packed) {
    uint32_t u[3];
    std::memcpy(u, packed, 12);
    const uint32_t s[2] = {u[0] & 0x3f3f3f3fu, (u[2] & 0x0f0f0f0fu) | ((u[0] >> 2) & 0x30303030u)};
    const uint32_t m[2] = {u[1] & 0x3f3f3f3fu,
                           ((u[2] >> 4) & 0x0f0f0f0fu) | ((u[1] >> 2) & 0x30303030u)};
    std::memcpy(sc, s, 8);
    std::memcpy(mn, m, 8);
  }
  // min j repeated for the two 16-element bsums of sub-block j, as int16.
  __m256i mins_per_bsum() const {
    const __m128i m = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(mn)));
    return _mm256_set_m128i(_mm_unpackhi_epi16(m, m), _mm_unpacklo_epi16(m, m));
  }
};

// Q4_K, and Q5_K (kFiveBit) whose fifth bits for sub-block j sit in bit j of qh[element % 32].
template <class Ops, bool kFiveBit, int MR, int NR>
void k4_tile(int64_t k, const uint8_t* w, int64_t w_stride, const uint8_t* a, int64_t a_stride,
             float* y, int64_t ldy) {
  using Block = std::conditional_t<kFiveBit, BlockQ5_K, BlockQ4_K>;
  float acc[MR][NR] = {};
  const __m256i low_mask = _mm256_set1_epi8(0x0F);
  const int64_t nb = k / kQKK;
  const int64_t ahead = prefetch_offset<NR>(w_stride);
  for (int64_t b = 0; b < nb; ++b) {
    prefetch_ahead<MR, NR, sizeof(Block)>(w, w_stride, ahead, b);
    for (int c = 0; c < NR; ++c) {
      const Block& q4 = reinterpret_cast<const Block*>(w + c * w_stride)[b];
      const K4Scales scales(q4.scales);
      const __m256i mins = scales.mins_per_bsum();
      const float d = half_to_float(q4.d), dmin = half_to_float(q4.dmin);
      // Unpacked once per weight block, reused by every activation row of the tile.
      __m256i q[8], sc[8];
      for (int t = 0; t < 4; ++t) {
        const __m256i packed = load256(q4.qs + 32 * t);
        q[2 * t] = _mm256_and_si256(packed, low_mask);
        q[2 * t + 1] = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low_mask);
      }
      if constexpr (kFiveBit) {
        const __m256i qh = load256(q4.qh);
        const __m256i one = _mm256_set1_epi8(1);
        for (int j = 0; j < 8; ++j) {
          const __m256i bit = _mm256_and_si256(_mm256_srli_epi16(qh, j), one);
          q[j] = _mm256_or_si256(q[j], _mm256_slli_epi16(bit, 4));
        }
      }
      for (int j = 0; j < 8; ++j) sc[j] = _mm256_set1_epi16(scales.sc[j]);
      for (int r = 0; r < MR; ++r) {
        const BlockQ8_K& ab = reinterpret_cast<const BlockQ8_K*>(a + r * a_stride)[b];
        __m256i sum = _mm256_setzero_si256();
        for (int j = 0; j < 8; ++j) {
          const __m256i p = _mm256_maddubs_epi16(q[j], load256(ab.qs + 32 * j));
          sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, sc[j]));
        }
        int sumi, summ;
        hsum2_epi32(sum, _mm256_madd_epi16(load256(ab.bsums), mins), &sumi, &summ);
        acc[r][c] = std::fma(d * ab.d, static_cast<float>(sumi), acc[r][c]);
        acc[r][c] = std::fma(-(dmin * ab.d), static_cast<float>(summ), acc[r][c]);
      }
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int c = 0; c < NR; ++c) y[r * ldy + c] = acc[r][c];
  }
}

// The K-quants with 16-element sub-blocks, decoded to unsigned bytes u (element 32 * i + l in
// u[i] byte l) with value = u - kOffset, int16 scales, and (Q2_K) mins.
struct K16Block {
  __m256i u[8];
  int16_t scale[16];
  __m256i corr16;  // per-16 factors for the bsums term: scales (offset types) or mins
  float d, dmin;
};

struct Q6_KDecoder {
  using Block = BlockQ6_K;
  static constexpr int kOffset = 32;
  static constexpr bool kHasMin = false;
  static void decode(const Block& b, K16Block& out) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i m30 = _mm256_set1_epi8(0x30);
    for (int n = 0; n < 2; ++n) {
      const __m256i ql0 = load256(b.ql + 64 * n);
      const __m256i ql1 = load256(b.ql + 64 * n + 32);
      const __m256i qh = load256(b.qh + 32 * n);
      out.u[4 * n] = _mm256_or_si256(_mm256_and_si256(ql0, m4),
                                     _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
      out.u[4 * n + 1] = _mm256_or_si256(_mm256_and_si256(ql1, m4),
                                         _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
      out.u[4 * n + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                         _mm256_and_si256(qh, m30));
      out.u[4 * n + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                         _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
    }
    for (int j = 0; j < 16; ++j) out.scale[j] = b.scales[j];
    out.corr16 = _mm256_cvtepi8_epi16(load128(b.scales));
    out.d = half_to_float(b.d);
    out.dmin = 0.f;
  }
};

struct Q3_KDecoder {
  using Block = af::quant::BlockQ3_K;
  static constexpr int kOffset = 4;
  static constexpr bool kHasMin = false;
  static void decode(const Block& b, K16Block& out) {
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i one = _mm256_set1_epi8(1);
    const __m256i hm = load256(b.hmask);
    for (int n = 0; n < 2; ++n) {
      const __m256i q = load256(b.qs + 32 * n);
      for (int sft = 0; sft < 4; ++sft) {
        const __m256i low = _mm256_and_si256(_mm256_srli_epi16(q, 2 * sft), m3);
        const __m256i high = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * n + sft), one);
        out.u[4 * n + sft] = _mm256_or_si256(low, _mm256_slli_epi16(high, 2));
      }
    }
    for (int j = 0; j < 16; ++j)
      out.scale[j] = static_cast<int16_t>(af::quant::q3k_scale(b.scales, j));
    out.corr16 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(out.scale));
    out.d = half_to_float(b.d);
    out.dmin = 0.f;
  }
};

struct Q2_KDecoder {
  using Block = af::quant::BlockQ2_K;
  static constexpr int kOffset = 0;
  static constexpr bool kHasMin = true;
  static void decode(const Block& b, K16Block& out) {
    const __m256i m3 = _mm256_set1_epi8(3);
    for (int n = 0; n < 2; ++n) {
      const __m256i q = load256(b.qs + 32 * n);
      for (int sft = 0; sft < 4; ++sft) {
        out.u[4 * n + sft] = _mm256_and_si256(_mm256_srli_epi16(q, 2 * sft), m3);
      }
    }
    for (int j = 0; j < 16; ++j) out.scale[j] = b.scales[j] & 0xF;
    const __m128i packed = load128(b.scales);
    out.corr16 =
        _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0F)));
    out.d = half_to_float(b.d);
    out.dmin = half_to_float(b.dmin);
  }
};

template <class Ops, class Dec, int MR, int NR>
void k16_tile(int64_t k, const uint8_t* w, int64_t w_stride, const uint8_t* a, int64_t a_stride,
              float* y, int64_t ldy) {
  using Block = typename Dec::Block;
  float acc[MR][NR] = {};
  const int64_t nb = k / kQKK;
  const int64_t ahead = prefetch_offset<NR>(w_stride);
  K16Block wb;
  for (int64_t b = 0; b < nb; ++b) {
    prefetch_ahead<MR, NR, sizeof(Block)>(w, w_stride, ahead, b);
    for (int c = 0; c < NR; ++c) {
      Dec::decode(reinterpret_cast<const Block*>(w + c * w_stride)[b], wb);
      __m256i sc[8];
      for (int i = 0; i < 8; ++i) {
        sc[i] =
            _mm256_set_m128i(_mm_set1_epi16(wb.scale[2 * i + 1]), _mm_set1_epi16(wb.scale[2 * i]));
      }
      for (int r = 0; r < MR; ++r) {
        const BlockQ8_K& ab = reinterpret_cast<const BlockQ8_K*>(a + r * a_stride)[b];
        __m256i sum = _mm256_setzero_si256();
        for (int i = 0; i < 8; ++i) {
          const __m256i p = _mm256_maddubs_epi16(wb.u[i], load256(ab.qs + 32 * i));
          sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, sc[i]));
        }
        int sumi, corr;
        hsum2_epi32(sum, _mm256_madd_epi16(load256(ab.bsums), wb.corr16), &sumi, &corr);
        if constexpr (Dec::kHasMin) {
          acc[r][c] = std::fma(wb.d * ab.d, static_cast<float>(sumi), acc[r][c]);
          acc[r][c] = std::fma(-(wb.dmin * ab.d), static_cast<float>(corr), acc[r][c]);
        } else {
          acc[r][c] =
              std::fma(wb.d * ab.d, static_cast<float>(sumi - Dec::kOffset * corr), acc[r][c]);
        }
      }
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int c = 0; c < NR; ++c) y[r * ldy + c] = acc[r][c];
  }
}

#if defined(__AVX512VNNI__)
// Decode (MR == 1) K-quant tiles with 512-bit registers: two 32-element sub-blocks per register,
// the scale multiply fused into the sum by vpdpwssd. Only the exact integer sums are computed
// differently; the float steps are those of k4_tile / k16_tile, so the bits are the same.
inline __m256i fold512(__m512i v) {
  return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

inline __m512i load512(const void* p) { return _mm512_loadu_si512(p); }

// {sum(a), sum(b)} in lanes 0 and 1, as floats (no round trip through general registers).
inline __m128 hsum2_ps(__m256i a, __m256i b) {
  const __m256i h = _mm256_hadd_epi32(a, b);  // a01 a23 b01 b23 | a45 a67 b45 b67
  const __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
  return _mm_cvtepi32_ps(_mm_hadd_epi32(s, s));
}

template <bool kFiveBit, int NR>
void k4_row_tile512(int64_t k, const uint8_t* w, int64_t w_stride, const uint8_t* a, int64_t,
                    float* y, int64_t) {
  using Block = std::conditional_t<kFiveBit, BlockQ5_K, BlockQ4_K>;
  float acc[NR] = {};
  const __m512i low_mask = _mm512_set1_epi8(0x0F);
  // Low nibbles (sub-block 2t) in the low half, high nibbles (2t + 1) in the high half.
  const __m512i nibble_shift = _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0);
  // The int32 lanes of the scales vector holding sub-blocks 2t and 2t + 1.
  __m512i scale_index[4];
  __m512i fifth_bit[4];
  for (int t = 0; t < 4; ++t) {
    scale_index[t] = _mm512_inserti64x4(_mm512_set1_epi32(2 * t), _mm256_set1_epi32(2 * t + 1), 1);
    fifth_bit[t] = _mm512_inserti64x4(_mm512_set1_epi8(static_cast<char>(1 << (2 * t))),
                                      _mm256_set1_epi8(static_cast<char>(1 << (2 * t + 1))), 1);
  }
  const auto* act = reinterpret_cast<const BlockQ8_K*>(a);
  const int64_t nb = k / kQKK;
  const int64_t ahead = prefetch_offset<NR>(w_stride);
  for (int64_t b = 0; b < nb; ++b) {
    prefetch_ahead<1, NR, sizeof(Block)>(w, w_stride, ahead, b);
    const BlockQ8_K& ab = act[b];
    const __m256i bsums = load256(ab.bsums);
    for (int c = 0; c < NR; ++c) {
      const Block& q4 = reinterpret_cast<const Block*>(w + c * w_stride)[b];
      const K4Scales scales(q4.scales);
      // Each int32 lane holds its scale twice (as two int16), the pair vpdpwssd multiplies.
      const __m256i sc32 =
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(scales.sc)));
      const __m512i sc_pairs =
          _mm512_castsi256_si512(_mm256_or_si256(sc32, _mm256_slli_epi32(sc32, 16)));
      __m512i qh;
      if constexpr (kFiveBit) qh = _mm512_broadcast_i64x4(load256(q4.qh));
      __m512i sum = _mm512_setzero_si512();
      for (int t = 0; t < 4; ++t) {
        const __m512i packed = _mm512_broadcast_i64x4(load256(q4.qs + 32 * t));
        __m512i q = _mm512_and_si512(_mm512_srlv_epi64(packed, nibble_shift), low_mask);
        if constexpr (kFiveBit) {
          q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(qh, fifth_bit[t]), q,
                                   _mm512_set1_epi8(0x10));
        }
        const __m512i p = _mm512_maddubs_epi16(q, load512(ab.qs + 64 * t));
        sum = _mm512_dpwssd_epi32(sum, p, _mm512_permutexvar_epi32(scale_index[t], sc_pairs));
      }
      const __m128 sums = hsum2_ps(fold512(sum), _mm256_madd_epi16(bsums, scales.mins_per_bsum()));
      // {d, dmin} (adjacent halves) times the activation scale in one step.
      uint32_t d_dmin;
      std::memcpy(&d_dmin, reinterpret_cast<const uint8_t*>(&q4), 4);  // d, dmin lead the block
      const __m128 scaled =
          _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(d_dmin))), _mm_set1_ps(ab.d));
      acc[c] = std::fma(_mm_cvtss_f32(scaled), _mm_cvtss_f32(sums), acc[c]);
      acc[c] = std::fma(-_mm_cvtss_f32(_mm_movehdup_ps(scaled)),
                        _mm_cvtss_f32(_mm_movehdup_ps(sums)), acc[c]);
    }
  }
  for (int c = 0; c < NR; ++c) y[c] = acc[c];
}

template <int NR>
void q6_k_row_tile512(int64_t k, const uint8_t* w, int64_t w_stride, const uint8_t* a, int64_t,
                      float* y, int64_t) {
  float acc[NR] = {};
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const __m512i m30 = _mm512_set1_epi8(0x30);
  // Fifth and sixth bits: qh << 4 for u[4n] and << 2 for u[4n + 1]; qh >> 0 for u[4n + 2] and
  // >> 2 for u[4n + 3] (the layout of Q6_KDecoder).
  const __m512i left = _mm512_set_epi64(2, 2, 2, 2, 4, 4, 4, 4);
  const __m512i right = _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0);
  // Word w of the scale vector for the pair of 32-element rows starting at sub-block 4p:
  // 16-element scale 4p + w / 8 (maddubs leaves 8 words per 16 elements).
  alignas(64) int16_t index_words[4][32];
  for (int p = 0; p < 4; ++p) {
    for (int i = 0; i < 32; ++i) index_words[p][i] = static_cast<int16_t>(4 * p + i / 8);
  }
  __m512i scale_index[4];
  for (int p = 0; p < 4; ++p) scale_index[p] = load512(index_words[p]);
  const auto* act = reinterpret_cast<const BlockQ8_K*>(a);
  const int64_t nb = k / kQKK;
  const int64_t ahead = prefetch_offset<NR>(w_stride);
  for (int64_t b = 0; b < nb; ++b) {
    prefetch_ahead<1, NR, sizeof(BlockQ6_K)>(w, w_stride, ahead, b);
    const BlockQ8_K& ab = act[b];
    const __m256i bsums = load256(ab.bsums);
    for (int c = 0; c < NR; ++c) {
      const BlockQ6_K& q6 = reinterpret_cast<const BlockQ6_K*>(w + c * w_stride)[b];
      const __m256i scales16 = _mm256_cvtepi8_epi16(load128(q6.scales));
      const __m512i scales = _mm512_castsi256_si512(scales16);
      __m512i sum = _mm512_setzero_si512();
      for (int n = 0; n < 2; ++n) {
        const __m512i ql = load512(q6.ql + 64 * n);
        const __m512i qh = _mm512_broadcast_i64x4(load256(q6.qh + 32 * n));
        const __m512i u_lo = _mm512_or_si512(_mm512_and_si512(ql, m4),
                                             _mm512_and_si512(_mm512_sllv_epi64(qh, left), m30));
        const __m512i u_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                             _mm512_and_si512(_mm512_srlv_epi64(qh, right), m30));
        const __m512i p_lo = _mm512_maddubs_epi16(u_lo, load512(ab.qs + 128 * n));
        const __m512i p_hi = _mm512_maddubs_epi16(u_hi, load512(ab.qs + 128 * n + 64));
        sum = _mm512_dpwssd_epi32(sum, p_lo, _mm512_permutexvar_epi16(scale_index[2 * n], scales));
        sum = _mm512_dpwssd_epi32(sum, p_hi,
                                  _mm512_permutexvar_epi16(scale_index[2 * n + 1], scales));
      }
      int sumi, corr;
      hsum2_epi32(fold512(sum), _mm256_madd_epi16(bsums, scales16), &sumi, &corr);
      acc[c] = std::fma(half_to_float(q6.d) * ab.d,
                        static_cast<float>(sumi - Q6_KDecoder::kOffset * corr), acc[c]);
    }
  }
  for (int c = 0; c < NR; ++c) y[c] = acc[c];
}
#endif

using TileFn = void (*)(int64_t k, const uint8_t* w, int64_t w_stride, const uint8_t* a,
                        int64_t a_stride, float* y, int64_t ldy);

// Covers na x nw with MR x NR tiles, 1 x kRowNR tiles for leftover rows and 1 x 1 at the edges.
// Each output is computed by the same arithmetic whichever tile it falls in.
template <TileFn kFull, TileFn kRow, TileFn kOne, int MR, int NR, int kRowNR = NR>
void tiled(int64_t k, const uint8_t* w, int64_t w_stride, int64_t nw, const uint8_t* a,
           int64_t a_stride, int64_t na, float* y, int64_t ldy) {
  int64_t i = 0;
  for (; i + MR <= na; i += MR) {
    int64_t j = 0;
    for (; j + NR <= nw; j += NR) {
      kFull(k, w + j * w_stride, w_stride, a + i * a_stride, a_stride, y + i * ldy + j, ldy);
    }
    for (; j < nw; ++j) {
      for (int r = 0; r < MR; ++r) {
        kOne(k, w + j * w_stride, w_stride, a + (i + r) * a_stride, a_stride, y + (i + r) * ldy + j,
             ldy);
      }
    }
  }
  for (; i < na; ++i) {
    int64_t j = 0;
    for (; j + kRowNR <= nw; j += kRowNR) {
      kRow(k, w + j * w_stride, w_stride, a + i * a_stride, a_stride, y + i * ldy + j, ldy);
    }
    for (; j < nw; ++j) {
      kOne(k, w + j * w_stride, w_stride, a + i * a_stride, a_stride, y + i * ldy + j, ldy);
    }
  }
}

template <class Ops, class Dec, int MR, int NR>
constexpr QuantDotFn legacy_dot = tiled<legacy_tile<Ops, Dec, MR, NR>, legacy_tile<Ops, Dec, 1, 8>,
                                        legacy_tile<Ops, Dec, 1, 1>, MR, NR, 8>;
#if defined(__AVX512VNNI__)
template <class Ops, class Dec, int MR, int NR>
constexpr QuantDotFn legacy_dot512 = tiled<legacy_tile512<Dec, MR, NR>, legacy_row_tile512<Dec, 8>,
                                           legacy_tile<Ops, Dec, 1, 1>, MR, NR, 8>;
#endif
template <class Ops, bool kFiveBit, int MR, int NR>
constexpr QuantDotFn k4_dot = tiled<k4_tile<Ops, kFiveBit, MR, NR>, k4_tile<Ops, kFiveBit, 1, NR>,
                                    k4_tile<Ops, kFiveBit, 1, 1>, MR, NR>;
#if defined(__AVX512VNNI__)
template <class Ops, bool kFiveBit, int MR, int NR>
constexpr QuantDotFn k4_dot512 = tiled<k4_tile<Ops, kFiveBit, MR, NR>, k4_row_tile512<kFiveBit, NR>,
                                       k4_tile<Ops, kFiveBit, 1, 1>, MR, NR>;
template <class Ops, int MR, int NR>
constexpr QuantDotFn q6_k_dot512 = tiled<k16_tile<Ops, Q6_KDecoder, MR, NR>, q6_k_row_tile512<NR>,
                                         k16_tile<Ops, Q6_KDecoder, 1, 1>, MR, NR>;
#endif
template <class Ops, class Dec, int MR, int NR>
constexpr QuantDotFn k16_dot =
    tiled<k16_tile<Ops, Dec, MR, NR>, k16_tile<Ops, Dec, 1, NR>, k16_tile<Ops, Dec, 1, 1>, MR, NR>;

// 32 int32 lanes (4 vectors, element order) -> 32 int8 in element order.
inline __m256i pack_int32_to_int8(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_packs_epi32(a, b);  // lane-interleaved
  const __m256i cd = _mm256_packs_epi32(c, d);
  const __m256i abcd = _mm256_packs_epi16(ab, cd);
  return _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// C's roundf (half away from zero), exactly: truncate, then step away from zero when the
// remainder (exact) is at least one half.
inline __m256 round_half_away(__m256 v) {
  const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  const __m256 rem = _mm256_andnot_ps(sign_bit, _mm256_sub_ps(v, t));
  const __m256 step = _mm256_or_ps(_mm256_and_ps(v, sign_bit), _mm256_set1_ps(1.0f));
  const __m256 apply = _mm256_cmp_ps(rem, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
  return _mm256_add_ps(t, _mm256_and_ps(apply, step));
}

inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

// Byte-identical to af::quant::ref::quantize_q8_0 for finite input.
inline void quantize_q8_0(const float* x, void* out, int64_t k) {
  auto* y = static_cast<BlockQ8_0*>(out);
  for (int64_t i = 0; i < k / kQK; ++i, x += kQK) {
    __m256 v[4];
    __m256 mx = _mm256_setzero_ps();
    for (int j = 0; j < 4; ++j) {
      v[j] = _mm256_loadu_ps(x + 8 * j);
      mx = _mm256_max_ps(mx, abs_ps(v[j]));
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const float d = amax / 127;
    const float id = d != 0.f ? 1.0f / d : 0.0f;
    y[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
    const __m256 idv = _mm256_set1_ps(id);
    __m256i q[4];
    for (int j = 0; j < 4; ++j) {
      q[j] = _mm256_cvttps_epi32(round_half_away(_mm256_mul_ps(v[j], idv)));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs),
                        pack_int32_to_int8(q[0], q[1], q[2], q[3]));
  }
}

// Byte-identical to af::quant::ref::quantize_q8_k for finite input.
inline void quantize_q8_k(const float* x, void* out, int64_t k) {
  auto* y = static_cast<BlockQ8_K*>(out);
  for (int64_t i = 0; i < k / kQKK; ++i, x += kQKK) {
    __m256 mx = _mm256_setzero_ps();
    for (int j = 0; j < kQKK; j += 8) mx = _mm256_max_ps(mx, abs_ps(_mm256_loadu_ps(x + j)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    if (amax == 0.f) {
      std::memset(&y[i], 0, sizeof(BlockQ8_K));
      continue;
    }
    // The reference keeps the first element of largest magnitude, with its sign.
    float max = 0.f;
    const __m256 amax_v = _mm256_set1_ps(amax);
    for (int j = 0; j < kQKK; j += 8) {
      const int hit =
          _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + j)), amax_v, _CMP_EQ_OQ));
      if (hit != 0) {
        max = x[j + __builtin_ctz(static_cast<unsigned>(hit))];
        break;
      }
    }
    const float iscale = -127.f / max;
    const __m256 is = _mm256_set1_ps(iscale);
    const __m256i cap = _mm256_set1_epi32(127);
    const __m256i ones8 = _mm256_set1_epi8(1);
    const __m256i ones16 = _mm256_set1_epi16(1);
    for (int j = 0; j < kQKK; j += 32) {
      __m256i q[4];
      for (int t = 0; t < 4; ++t) {
        // vcvtps2dq rounds to nearest even, as the reference's nearest_int does.
        q[t] = _mm256_min_epi32(
            _mm256_cvtps_epi32(_mm256_mul_ps(is, _mm256_loadu_ps(x + j + 8 * t))), cap);
      }
      const __m256i packed = pack_int32_to_int8(q[0], q[1], q[2], q[3]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs + j), packed);
      alignas(32) int32_t quads[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(quads),
                         _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, packed), ones16));
      y[i].bsums[j / 16] = static_cast<int16_t>(quads[0] + quads[1] + quads[2] + quads[3]);
      y[i].bsums[j / 16 + 1] = static_cast<int16_t>(quads[4] + quads[5] + quads[6] + quads[7]);
    }
    y[i].d = 1 / iscale;
  }
}

// The table for one ISA: SIMD kernels where written, the scalar ones elsewhere.
template <class Ops, int MR, int NR>
QuantKernels make_table(const char* isa) {
  QuantKernels t = scalar_quant_kernels();
  t.isa = isa;
  if constexpr (Ops::kNoSaturation) {
    t.dot[kSlotQ8_0] = legacy_dot<Ops, Q8_0OffsetDecoder, MR, NR>;
  } else {
    t.dot[kSlotQ8_0] = legacy_dot<Ops, Q8_0SignDecoder, MR, NR>;
  }
  t.dot[kSlotQ4_0] = legacy_dot<Ops, Q4_0Decoder, MR, NR>;
  t.dot[kSlotQ4_1] = legacy_dot<Ops, Q4_1Decoder, MR, NR>;
  t.dot[kSlotQ5_0] = legacy_dot<Ops, Q5_0Decoder, MR, NR>;
  t.dot[kSlotQ5_1] = legacy_dot<Ops, Q5_1Decoder, MR, NR>;
#if defined(__AVX512VNNI__)
  // Decode rows with 512-bit VNNI (the 256-bit Ops::dot tiles stay for prefill).
  t.dot[kSlotQ8_0] = legacy_dot512<Ops, Q8_0OffsetDecoder, MR, NR>;
  t.dot[kSlotQ4_0] = legacy_dot512<Ops, Q4_0Decoder, MR, NR>;
  t.dot[kSlotQ4_1] = legacy_dot512<Ops, Q4_1Decoder, MR, NR>;
  t.dot[kSlotQ5_0] = legacy_dot512<Ops, Q5_0Decoder, MR, NR>;
  t.dot[kSlotQ5_1] = legacy_dot512<Ops, Q5_1Decoder, MR, NR>;
#endif
  t.dot[kSlotQ4_K] = k4_dot<Ops, false, MR, NR>;
  t.dot[kSlotQ5_K] = k4_dot<Ops, true, MR, NR>;
  t.dot[kSlotQ6_K] = k16_dot<Ops, Q6_KDecoder, MR, NR>;
  t.dot[kSlotQ3_K] = k16_dot<Ops, Q3_KDecoder, MR, NR>;
  t.dot[kSlotQ2_K] = k16_dot<Ops, Q2_KDecoder, MR, NR>;
#if defined(__AVX512VNNI__)
  t.dot[kSlotQ4_K] = k4_dot512<Ops, false, MR, NR>;
  t.dot[kSlotQ5_K] = k4_dot512<Ops, true, MR, NR>;
  t.dot[kSlotQ6_K] = q6_k_dot512<Ops, MR, NR>;
#endif
  t.quantize_q8_0 = quantize_q8_0;
  t.quantize_q8_k = quantize_q8_k;
  return t;
}

}  // namespace af::cpu::quant::simd
