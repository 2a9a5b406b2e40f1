#pragma once
// Multi-row (prefill, batched decode) K-quant matmul with AVX-512 VNNI, for Q4_K, Q5_K and Q6_K.
// Included only from dot_avx512vnni.cpp; uses the block decoders of dot_simd.hpp.
//
// The decode tiles keep the k dimension in the vector lanes and reduce every dot product
// horizontally once per super-block. Here the lanes are weight rows instead: a panel of 32 weight
// rows is unpacked one super-block at a time into unsigned bytes, transposed so that lane c of a
// vector holds 4 consecutive values of weight row c, and every activation row then passes over
// that super-block with vpdpbusd against a broadcast 4-byte group of activations. Each lane ends
// up with the exact integer sum of its own (row, column) pair, so no horizontal sums are needed
// and the unpacking is paid once per panel block for all activation rows.
//
// Per super-block the integer sums are exact and in int32 (the sub-block sums times their scales
// by vpmulld, the mins from the Q8_K block sums by vpdpwssd; Q6_K's -32 offset as each sub-block
// sum's start), and the float steps are those of quant_kernels.hpp: acc = fma(d * da, float(sumi),
// acc), then for the types with mins acc = fma(-(dmin * da), float(summ), acc), super-blocks in
// order. The accumulator is the output itself, so results are bit-identical to the scalar
// reference.
#include <immintrin.h>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "backend/cpu/kernels/transpose_avx512.hpp"
#include "backend/cpu/quant/blocks.hpp"
#include "backend/cpu/quant/dot_simd.hpp"
#include "backend/cpu/quant/quant_kernels.hpp"

namespace af::cpu::quant::simd {

inline constexpr int kPanelRows = 32;          // weight rows per panel: two vectors of 16 lanes
inline constexpr int kPanelGroups = kQKK / 4;  // 4-byte groups per super-block
inline constexpr int kPanelMaxSubBlocks = 16;  // scales per super-block (Q6_K)
inline constexpr int kPanelCorrPairs = 8;      // int16 pairs of the 16 Q8_K block sums

// One super-block of a 32-row panel, unpacked. values[g][h] lane c: the 4 unsigned bytes of
// elements 4g .. 4g + 3 of weight row 16h + c. scale[j][c]: the integer scale of sub-block j of
// row c. corr[t][c]: two int16 factors for the Q8_K block sums 2t and 2t + 1 (the mins; unused
// by Q6_K, whose offset panel_rows folds into its sub-block sums).
struct PanelBlock {
  __m512i values[kPanelGroups][2];
  alignas(64) int32_t scale[kPanelMaxSubBlocks][kPanelRows];
  alignas(64) int32_t corr[kPanelCorrPairs][kPanelRows];
  alignas(64) float d[kPanelRows];
  alignas(64) float dmin[kPanelRows];
};

// The dword at p + offset[c] in lane c for the lanes in valid, zero in the others.
inline __m512i gather_dwords(const uint8_t* p, __m512i offset, __mmask16 valid) {
  return _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), valid, offset, p, 1);
}

// Q4_K and Q5_K (kFiveBit): 8 sub-blocks of 32 with 6-bit scales and mins.
template <bool kFiveBit>
struct K4Panel {
  using Block = std::conditional_t<kFiveBit, BlockQ5_K, BlockQ4_K>;
  static constexpr int kSubBlocks = 8;
  static constexpr int64_t kMinActRows = 2;  // fewer use the row tile (measured: faster from 2)
  // Activation rows and interleaved sub-blocks per panel_rows step: 3 x 2 x 2 sub-block sums,
  // 3 x 2 totals and the weights fit the 32 registers (4 x 2 spilled; measured 5-7% faster
  // than 4 rows of one sub-block at 128 rows).
  static constexpr int kActRows = 3;
  static constexpr int kInterleave = 2;
  static constexpr bool kHasMin = true;
  static constexpr int kOffset = 0;

  // Elements 64q .. 64q + 63 (sub-blocks 2q and 2q + 1) as unsigned bytes.
  static __m512i quarter(const Block& b, int q) {
    const __m512i packed = _mm512_broadcast_i64x4(load256(b.qs + 32 * q));
    __m512i u =
        _mm512_and_si512(_mm512_srlv_epi64(packed, _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0)),
                         _mm512_set1_epi8(0x0F));
    if constexpr (kFiveBit) {
      const __m512i qh = _mm512_broadcast_i64x4(load256(b.qh));
      const __m512i bit =
          _mm512_inserti64x4(_mm512_set1_epi8(static_cast<char>(1 << (2 * q))),
                             _mm256_set1_epi8(static_cast<char>(1 << (2 * q + 1))), 1);
      u = _mm512_mask_add_epi8(u, _mm512_test_epi8_mask(qh, bit), u, _mm512_set1_epi8(0x10));
    }
    return u;
  }

  // The scales, mins, d and dmin of 16 rows (half h of the panel), whose blocks lie at
  // first + offset[c] for the lanes in valid (the others read as zero blocks).
  static void scales16(const uint8_t* first, __m512i offset, __mmask16 valid, int h,
                       PanelBlock& out) {
    const __m512i d_dmin = gather_dwords(first, offset, valid);
    __m512i packed[3];  // the 12 scale bytes, as K4Scales unpacks them
    for (int i = 0; i < 3; ++i) packed[i] = gather_dwords(first + 4 + 4 * i, offset, valid);
    store_scales16(packed, h, out);
    _mm512_store_ps(out.d + 16 * h, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(d_dmin)));
    _mm512_store_ps(out.dmin + 16 * h,
                    _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(d_dmin, 16))));
  }

  // The scales and min factors of 16 rows (half h of the panel) from their 12 scale bytes,
  // lane c of packed[i] holding bytes 4i .. 4i + 3 of row c.
  static void store_scales16(const __m512i packed[3], int h, PanelBlock& out) {
    const __m512i low6 = _mm512_set1_epi32(0x3f3f3f3f);
    const __m512i low4 = _mm512_set1_epi32(0x0f0f0f0f);
    const __m512i top2 = _mm512_set1_epi32(0x30303030);
    const __m512i sc[2] = {
        _mm512_and_si512(packed[0], low6),
        _mm512_or_si512(_mm512_and_si512(packed[2], low4),
                        _mm512_and_si512(_mm512_srli_epi32(packed[0], 2), top2))};
    const __m512i mn[2] = {
        _mm512_and_si512(packed[1], low6),
        _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(packed[2], 4), low4),
                        _mm512_and_si512(_mm512_srli_epi32(packed[1], 2), top2))};
    const __m512i byte = _mm512_set1_epi32(0xFF);
    for (int j = 0; j < 8; ++j) {
      const __m128i shift = _mm_cvtsi32_si128(8 * (j % 4));
      _mm512_store_si512(out.scale[j] + 16 * h,
                         _mm512_and_si512(_mm512_srl_epi32(sc[j / 4], shift), byte));
      const __m512i m = _mm512_and_si512(_mm512_srl_epi32(mn[j / 4], shift), byte);
      // min j for both block sums of sub-block j
      _mm512_store_si512(out.corr[j] + 16 * h, _mm512_or_si512(m, _mm512_slli_epi32(m, 16)));
    }
  }
};

// Q6_K: 16 sub-blocks of 16 with signed 8-bit scales, values u - 32 for 6-bit u.
struct Q6KPanel {
  using Block = BlockQ6_K;
  static constexpr int kSubBlocks = 16;
  static constexpr int64_t kMinActRows = 3;  // fewer use the row tile (measured: faster from 3)
  static constexpr int kActRows = 4;         // activation rows per panel_rows step
  static constexpr int kInterleave = 1;      // (2 measured 5-8% slower: its chains are short)
  static constexpr bool kHasMin = false;
  static constexpr int kOffset = Q6_KDecoder::kOffset;

  // Elements 64q .. 64q + 63 as unsigned bytes (the layout of Q6_KDecoder).
  static __m512i quarter(const Block& b, int q) {
    const int n = q / 2;
    const __m512i ql = load512(b.ql + 64 * n);
    const __m512i qh = _mm512_broadcast_i64x4(load256(b.qh + 32 * n));
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i m30 = _mm512_set1_epi8(0x30);
    if (q % 2 == 0) {  // bits 0-1 (<< 4) then 2-3 (<< 2) of qh become bits 4-5
      return _mm512_or_si512(
          _mm512_and_si512(ql, m4),
          _mm512_and_si512(_mm512_sllv_epi64(qh, _mm512_set_epi64(2, 2, 2, 2, 4, 4, 4, 4)), m30));
    }
    return _mm512_or_si512(
        _mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
        _mm512_and_si512(_mm512_srlv_epi64(qh, _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0)), m30));
  }

  static void scales16(const uint8_t* first, __m512i offset, __mmask16 valid, int h,
                       PanelBlock& out) {
    __m512i sc[16];
    for (int i = 0; i < 4; ++i) {
      const __m512i packed = gather_dwords(first + offsetof(Block, scales) + 4 * i, offset, valid);
      for (int e = 0; e < 4; ++e) {  // byte e, sign-extended
        sc[4 * i + e] =
            _mm512_srai_epi32(_mm512_sll_epi32(packed, _mm_cvtsi32_si128(24 - 8 * e)), 24);
      }
    }
    store_scales16(sc, h, out);
    // The dword ending with d (the last two scales, then d) stays inside the block.
    const __m512i d = gather_dwords(first + offsetof(Block, d) - 2, offset, valid);
    _mm512_store_ps(out.d + 16 * h,
                    _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(d, 16))));
    _mm512_store_ps(out.dmin + 16 * h, _mm512_setzero_ps());
  }

  // The 16 scales of 16 rows (sc[j] lane c: scale j of row c). The -32 offset needs no
  // factors: panel_rows starts each sub-block sum at -32 times its activation block sum.
  static void store_scales16(const __m512i sc[16], int h, PanelBlock& out) {
    for (int j = 0; j < 16; ++j) _mm512_store_si512(out.scale[j] + 16 * h, sc[j]);
  }
};

// Unpacks super-block b of panel rows [0, rows) (rows <= 32; the rest are zero blocks, whose
// lanes are never stored).
template <class Panel>
void unpack_panel_block(const uint8_t* w, int64_t w_stride, int rows, int64_t b, PanelBlock& out) {
  using Block = typename Panel::Block;
  static const Block kZeroBlock{};
  const Block* blk[kPanelRows];
  for (int c = 0; c < kPanelRows; ++c) {
    blk[c] = c < rows ? reinterpret_cast<const Block*>(w + c * w_stride) + b : &kZeroBlock;
  }
  // Lane c: the byte offset of row c from row 0 (kquant_panel_dot checks that it fits).
  const __m512i offset =
      _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                         _mm512_set1_epi32(static_cast<int32_t>(w_stride)));
  for (int h = 0; h < 2; ++h) {
    const int valid = rows - 16 * h < 0 ? 0 : rows - 16 * h;
    const __mmask16 mask = static_cast<__mmask16>(valid >= 16 ? 0xFFFF : (1u << valid) - 1);
    Panel::scales16(w + 16 * h * w_stride + b * int64_t{sizeof(Block)}, offset, mask, h, out);
    for (int q = 0; q < 4; ++q) {
      __m512i v[16];
      for (int c = 0; c < 16; ++c) v[c] = Panel::quarter(*blk[16 * h + c], q);
      transpose16x16_epi32(v);
      for (int i = 0; i < 16; ++i) out.values[16 * q + i][h] = v[i];
    }
  }
}

template <class Panel>
void prefetch_panel_block(const uint8_t* w, int64_t w_stride, int rows, int64_t b) {
  using Block = typename Panel::Block;
  for (int c = 0; c < rows; ++c) {
    const uint8_t* p = w + c * w_stride + b * int64_t{sizeof(Block)};
    for (size_t off = 0; off < sizeof(Block); off += 64) __builtin_prefetch(p + off, 0, 3);
    __builtin_prefetch(p + sizeof(Block) - 1, 0, 3);  // the line the block ends in
  }
}

inline __m512i broadcast_dword(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// Adds super-block b of R activation rows times the unpacked panel block to y (rows ldy apart,
// lanes outside mask[h] untouched); first: y is not read but starts from zero.
//
// Two sub-blocks run interleaved: each sub-block sum is a chain of dependent vpdpbusd (latency
// 5), and 2 x R x 2 chains keep both multiply ports busy where R x 2 left them waiting (the
// scale products after each sub-block add a 10-cycle vpmulld). Q6_K's -32 offset starts each
// sub-block sum at -32 times its activation block sum, so the sums are those of (q - 32) * a
// exactly and no correction pass is needed.
template <class Panel, int R>
void panel_rows(const PanelBlock& pb, const uint8_t* a, int64_t a_stride, int64_t b, bool first,
                const __mmask16 mask[2], float* y, int64_t ldy) {
  constexpr int kGroupsPerSub = kPanelGroups / Panel::kSubBlocks;
  constexpr int kStep = Panel::kInterleave;
  static_assert(Panel::kSubBlocks % kStep == 0);
  const BlockQ8_K* act[R];
  for (int r = 0; r < R; ++r) act[r] = reinterpret_cast<const BlockQ8_K*>(a + r * a_stride) + b;
  // Q6_K: -32 times the 16 block sums of each row (its sub-blocks are the Q8_K sums' blocks),
  // stored once to be broadcast from memory (a load, not a shuffle-port broadcast).
  [[maybe_unused]] alignas(64) int32_t start[Panel::kHasMin ? 1 : R][16];
  if constexpr (!Panel::kHasMin) {
    for (int r = 0; r < R; ++r) {
      const __m512i bs = _mm512_cvtepi16_epi32(load256(act[r]->bsums));
      _mm512_store_si512(start[r], _mm512_mullo_epi32(bs, _mm512_set1_epi32(-Panel::kOffset)));
    }
  }
  __m512i total[R][2];
  for (int r = 0; r < R; ++r) total[r][0] = total[r][1] = _mm512_setzero_si512();
  for (int j = 0; j < Panel::kSubBlocks; j += kStep) {
    __m512i sub[kStep][R][2];
    for (int q = 0; q < kStep; ++q) {
      for (int r = 0; r < R; ++r) {
        if constexpr (Panel::kHasMin) {
          sub[q][r][0] = sub[q][r][1] = _mm512_setzero_si512();
        } else {
          sub[q][r][0] = sub[q][r][1] = _mm512_set1_epi32(start[r][j + q]);
        }
      }
    }
    for (int u = 0; u < kGroupsPerSub; ++u) {
      for (int q = 0; q < kStep; ++q) {
        const int g = (j + q) * kGroupsPerSub + u;
        const __m512i w0 = pb.values[g][0];
        const __m512i w1 = pb.values[g][1];
        for (int r = 0; r < R; ++r) {
          const __m512i av = broadcast_dword(act[r]->qs + 4 * g);
          sub[q][r][0] = _mm512_dpbusd_epi32(sub[q][r][0], w0, av);
          sub[q][r][1] = _mm512_dpbusd_epi32(sub[q][r][1], w1, av);
        }
      }
    }
    for (int q = 0; q < kStep; ++q) {
      for (int h = 0; h < 2; ++h) {
        const __m512i sc = _mm512_load_si512(pb.scale[j + q] + 16 * h);
        for (int r = 0; r < R; ++r) {
          total[r][h] = _mm512_add_epi32(total[r][h], _mm512_mullo_epi32(sub[q][r][h], sc));
        }
      }
    }
  }
  [[maybe_unused]] __m512i corr[R][2];
  if constexpr (Panel::kHasMin) {
    for (int r = 0; r < R; ++r) corr[r][0] = corr[r][1] = _mm512_setzero_si512();
    for (int t = 0; t < kPanelCorrPairs; ++t) {
      const __m512i f0 = _mm512_load_si512(pb.corr[t]);
      const __m512i f1 = _mm512_load_si512(pb.corr[t] + 16);
      for (int r = 0; r < R; ++r) {
        const __m512i bs = broadcast_dword(act[r]->bsums + 2 * t);
        corr[r][0] = _mm512_dpwssd_epi32(corr[r][0], f0, bs);
        corr[r][1] = _mm512_dpwssd_epi32(corr[r][1], f1, bs);
      }
    }
  }
  for (int h = 0; h < 2; ++h) {
    const __m512 d = _mm512_load_ps(pb.d + 16 * h);
    const __m512 dmin = _mm512_load_ps(pb.dmin + 16 * h);
    for (int r = 0; r < R; ++r) {
      float* out = y + r * ldy + 16 * h;
      const __m512 da = _mm512_set1_ps(act[r]->d);
      __m512 acc = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask[h], out);
      acc = _mm512_fmadd_ps(_mm512_mul_ps(d, da), _mm512_cvtepi32_ps(total[r][h]), acc);
      if constexpr (Panel::kHasMin) {
        // fnmadd: -(x * y) + acc, the same single rounding as fma(-x, y, acc).
        acc = _mm512_fnmadd_ps(_mm512_mul_ps(dmin, da), _mm512_cvtepi32_ps(corr[r][h]), acc);
      }
      _mm512_mask_storeu_ps(out, mask[h], acc);
    }
  }
}

// The QuantDotFn: panels of 32 weight rows, super-blocks in order, every activation row per
// super-block (4 at a time). Fewer than Panel::kMinActRows activation rows go to kFewRows.
template <class Panel, QuantDotFn kFewRows>
void kquant_panel_dot(int64_t k, const uint8_t* w, int64_t w_stride, int64_t nw, const uint8_t* a,
                      int64_t a_stride, int64_t na, float* y, int64_t ldy) {
  // The row offsets of a panel half must fit the int32 lanes of the scale gathers.
  if (na < Panel::kMinActRows || w_stride > INT32_MAX / kPanelRows) {
    kFewRows(k, w, w_stride, nw, a, a_stride, na, y, ldy);
    return;
  }
  const int64_t nb = k / kQKK;
  PanelBlock pb;
  for (int64_t j0 = 0; j0 < nw; j0 += kPanelRows) {
    const int rows = static_cast<int>(nw - j0 < kPanelRows ? nw - j0 : kPanelRows);
    const __mmask16 mask[2] = {static_cast<__mmask16>(rows >= 16 ? 0xFFFF : (1u << rows) - 1),
                               static_cast<__mmask16>(rows >= 32  ? 0xFFFF
                                                      : rows > 16 ? (1u << (rows - 16)) - 1
                                                                  : 0)};
    for (int64_t b = 0; b < nb; ++b) {
      unpack_panel_block<Panel>(w + j0 * w_stride, w_stride, rows, b, pb);
      // The next panel block is hinted into the cache while the activation rows pass over this
      // one: a model's weights come from memory, and 32 rows read one block each are too many
      // interleaved streams for the hardware prefetchers.
      if (b + 1 < nb) {
        prefetch_panel_block<Panel>(w + j0 * w_stride, w_stride, rows, b + 1);
      } else if (j0 + kPanelRows < nw) {
        const int64_t next_rows = nw - j0 - kPanelRows;
        prefetch_panel_block<Panel>(
            w + (j0 + kPanelRows) * w_stride, w_stride,
            static_cast<int>(next_rows < kPanelRows ? next_rows : kPanelRows), 0);
      }
      const bool first = b == 0;
      int64_t i = 0;
      for (; i + Panel::kActRows <= na; i += Panel::kActRows) {
        panel_rows<Panel, Panel::kActRows>(pb, a + i * a_stride, a_stride, b, first, mask,
                                           y + i * ldy + j0, ldy);
      }
      for (; i + 2 <= na; i += 2) {
        panel_rows<Panel, 2>(pb, a + i * a_stride, a_stride, b, first, mask, y + i * ldy + j0, ldy);
      }
      if (i < na) {
        panel_rows<Panel, 1>(pb, a + i * a_stride, a_stride, b, first, mask, y + i * ldy + j0, ldy);
      }
    }
  }
}

}  // namespace af::cpu::quant::simd
