// AVX-512 VNNI matmul kernels for Q2_K and Q3_K over the K-quant packed layout (kpacked.hpp).
//
// As for Q4_K (kpacked_avx512vnni.cpp), lane r of every vector is weight row r of the group:
// vpdpbusd sums a 16-element sub-block's unsigned 2- or 3-bit quants times the broadcast int8
// activations into each row's lane, and the float steps (one fma per super-block, in order)
// run on 16 rows with the bits of the scalar reference. A sub-block's sum stays within int16
// (Q2_K: 16 x 3 x 128; Q3_K: 16 x 7 x 128 + 4 x 16 x 128 for its -4 offset), so one vpdpwssd
// against the scale (an int16 in the low half of each lane, zero above) multiplies and adds
// it to the super-block sum, exactly, where the 4- to 6-bit types need a vpmulld.
// GCC 12.2's avx512fintrin.h self-initialises the _mm512_undefined_* placeholders (GCC PR 105593),
// which -Wuninitialized reports wherever they are inlined; those values are never read.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "af/core/error.hpp"
#include "backend/cpu/quant/blocks.hpp"
#include "backend/cpu/quant/kpacked.hpp"

namespace af::cpu::quant::kpacked {
namespace {

using af::quant::BlockQ8_K;
using af::quant::kQKK;

// Rows of activations a kernel call runs over the same weights.
constexpr int kMaxRows = 4;

inline __m512i load(const uint8_t* p) { return _mm512_loadu_si512(p); }

// 4 activation bytes broadcast to every lane.
inline __m512i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// Two int16 in one int32 (lo, hi), broadcast: the activation side of vpdpwssd.
inline __m512i bcast_pair(int lo, int hi) {
  return _mm512_set1_epi32(
      static_cast<int32_t>(static_cast<uint16_t>(lo) | (static_cast<uint32_t>(hi) << 16)));
}

inline __m512 halves(const uint8_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// Byte `i` (a constant) of each lane of v, as an int32.
inline __m512i byte_of(__m512i v, int i) {
  return _mm512_and_si512(_mm512_srli_epi32(v, 8 * i), _mm512_set1_epi32(0xff));
}

// Bits 2 s of every byte of the qs chunk q at bits 0-1 (other bits zero).
inline __m512i two_bits(__m512i q, int s) {
  return _mm512_and_si512(_mm512_srli_epi16(q, 2 * s), _mm512_set1_epi8(3));
}

// Q3_K's third bit: bit `bit` of every hmask byte moved to bit 2 and or-ed into the two low
// bits (0xf8: a | (b & c)). The unrolled loops make `bit` a constant.
inline __m512i with_third_bit(__m512i low, __m512i hm, int bit) {
  const __m512i moved = bit < 2 ? _mm512_slli_epi16(hm, 2 - bit) : _mm512_srli_epi16(hm, bit - 2);
  return _mm512_ternarylogic_epi32(low, moved, _mm512_set1_epi8(4), 0xf8);
}

// The 16 six-bit Q3_K scales of every row, 4 per vector: byte i of lanes of s[q] holds scale
// 4 q + i + 32 (as q3k_scale before its "- 32").
inline void q3_k_scales(const uint8_t* pb, __m512i* s) {
  const __m512i w0 = load(pb + 32), w1 = load(pb + 96), w2 = load(pb + 160);
  const __m512i m0f = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
  // Low nibbles from words 0 and 1 (scales 0..7) and their high nibbles (8..15); two high
  // bits each from word 2, bits 2 (j / 4) of byte j % 4, moved to bits 4-5.
  s[0] = _mm512_ternarylogic_epi32(_mm512_and_si512(w0, m0f), _mm512_slli_epi32(w2, 4), m30, 0xf8);
  s[1] = _mm512_ternarylogic_epi32(_mm512_and_si512(w1, m0f), _mm512_slli_epi32(w2, 2), m30, 0xf8);
  s[2] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi32(w0, 4), m0f), w2, m30, 0xf8);
  s[3] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi32(w1, 4), m0f),
                                   _mm512_srli_epi32(w2, 2), m30, 0xf8);
}

enum class Kind { kQ2_K, kQ3_K };

template <Kind kKind>
constexpr int64_t kBlockBytes = kKind == Kind::kQ2_K ? 1344 : 1760;
// Where a packed super-block's qs chunks start.
template <Kind kKind>
constexpr int kQsOffset = kKind == Kind::kQ2_K ? 320 : 224;

// The scale of sub-block j as vpdpwssd's weight side: the int16 in the low half of each lane.
template <Kind kKind>
inline __m512i sub_block_scale(const __m512i* sc, int j) {
  const __m512i b = byte_of(sc[j / 4], j % 4);
  if constexpr (kKind == Kind::kQ2_K) {
    return _mm512_and_si512(b, _mm512_set1_epi32(0x0f));
  } else {
    // 16-bit lanes: the low half becomes the signed scale, the high half stays 0.
    return _mm512_sub_epi16(b, _mm512_set1_epi32(32));
  }
}

// One packed Q2_K / Q3_K super-block of a group times MR activation rows.
template <Kind kKind, int MR>
inline void q23_block(const uint8_t* pb, const BlockQ8_K* const* ab, __m512* acc) {
  __m512i sc[4];  // byte i of sc[w]: the scale byte of sub-block 4 w + i (Q2_K: with its min)
  if constexpr (kKind == Kind::kQ2_K) {
    for (int w = 0; w < 4; ++w) sc[w] = load(pb + 64 + 64 * w);
  } else {
    q3_k_scales(pb, sc);
  }
  __m512i sumi[MR], summ[MR];
  for (int r = 0; r < MR; ++r) {
    sumi[r] = _mm512_setzero_si512();
    if constexpr (kKind == Kind::kQ2_K) {
      // The mins (high nibbles) as int16 pairs (4 w, 4 w + 2) and (4 w + 1, 4 w + 3) against
      // the activation sums of those sub-blocks.
      const __m512i nib = _mm512_set1_epi32(0x000f000f);
      const int16_t* bs = ab[r]->bsums;
      __m512i m = _mm512_setzero_si512();
      for (int w = 0; w < 4; ++w) {
        m = _mm512_dpwssd_epi32(m, _mm512_and_si512(_mm512_srli_epi32(sc[w], 4), nib),
                                bcast_pair(bs[4 * w], bs[4 * w + 2]));
        m = _mm512_dpwssd_epi32(m, _mm512_and_si512(_mm512_srli_epi32(sc[w], 12), nib),
                                bcast_pair(bs[4 * w + 1], bs[4 * w + 3]));
      }
      summ[r] = m;
    }
  }
#pragma GCC unroll 2
  for (int n = 0; n < 2; ++n) {
#pragma GCC unroll 4
    for (int s = 0; s < 4; ++s) {
      // Chunks c < 4 hold sub-block 8 n + 2 s, chunks c >= 4 the next one.
      const int j = 8 * n + 2 * s;
      __m512i part[MR][2];
      for (int r = 0; r < MR; ++r) {
        for (int h = 0; h < 2; ++h) {
          // Q3_K's quants are u - 4: each part starts at -4 x its activation sum.
          part[r][h] = kKind == Kind::kQ2_K ? _mm512_setzero_si512()
                                            : _mm512_set1_epi32(-4 * ab[r]->bsums[j + h]);
        }
      }
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) {
        __m512i u = two_bits(load(pb + kQsOffset<kKind> + 64 * (8 * n + c)), s);
        if constexpr (kKind == Kind::kQ3_K) {
          u = with_third_bit(u, load(pb + 1248 + 64 * c), 4 * n + s);
        }
        for (int r = 0; r < MR; ++r) {
          part[r][c / 4] =
              _mm512_dpbusd_epi32(part[r][c / 4], u, bcast4(ab[r]->qs + 128 * n + 32 * s + 4 * c));
        }
      }
      const __m512i s0 = sub_block_scale<kKind>(sc, j), s1 = sub_block_scale<kKind>(sc, j + 1);
      for (int r = 0; r < MR; ++r) {
        sumi[r] = _mm512_dpwssd_epi32(sumi[r], part[r][0], s0);
        sumi[r] = _mm512_dpwssd_epi32(sumi[r], part[r][1], s1);
      }
    }
  }
  const __m512 d = halves(pb);
  for (int r = 0; r < MR; ++r) {
    const __m512 da = _mm512_set1_ps(ab[r]->d);
    acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(d, da), _mm512_cvtepi32_ps(sumi[r]), acc[r]);
    if constexpr (kKind == Kind::kQ2_K) {
      acc[r] =
          _mm512_fnmadd_ps(_mm512_mul_ps(halves(pb + 32), da), _mm512_cvtepi32_ps(summ[r]), acc[r]);
    }
  }
}

// Rows [i, i + MR) of the output times one group's nb packed super-blocks.
template <Kind kKind, int MR>
void group_rows(const uint8_t* pg, int64_t nb, const uint8_t* a, int64_t a_stride, int64_t i,
                __mmask16 lanes, const float* bias, float* y, int64_t ldy) {
  __m512 acc[MR];
  for (int r = 0; r < MR; ++r) acc[r] = _mm512_setzero_ps();
  const BlockQ8_K* ab[MR];
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* pb = pg + b * kBlockBytes<kKind>;
    // The next super-blocks' first lines while this one computes (as kpacked_avx512vnni.cpp).
    _mm_prefetch(reinterpret_cast<const char*>(pb + 2 * kBlockBytes<kKind>), _MM_HINT_T0);
    for (int r = 0; r < MR; ++r)
      ab[r] = reinterpret_cast<const BlockQ8_K*>(a + (i + r) * a_stride) + b;
    q23_block<kKind, MR>(pb, ab, acc);
  }
  const __m512 bv = bias ? _mm512_maskz_loadu_ps(lanes, bias) : _mm512_setzero_ps();
  for (int r = 0; r < MR; ++r) {
    _mm512_mask_storeu_ps(y + (i + r) * ldy, lanes, bias ? _mm512_add_ps(acc[r], bv) : acc[r]);
  }
}

template <Kind kKind>
void gemm(const uint8_t* w, int64_t g0, int64_t g1, int64_t n, int64_t k, const uint8_t* a,
          int64_t a_stride, int64_t i0, int64_t i1, const float* bias, float* y, int64_t ldy) {
  const int64_t nb = k / kQKK;
  for (int64_t g = g0; g < g1; ++g) {
    const uint8_t* pg = w + (g - g0) * nb * kBlockBytes<kKind>;
    const int64_t j0 = g * kGroupRows;
    const int64_t rows = n - j0 < kGroupRows ? n - j0 : kGroupRows;
    const auto lanes = static_cast<__mmask16>((1u << rows) - 1);
    const float* bg = bias ? bias + j0 : nullptr;
    int64_t i = i0;
    for (; i + kMaxRows <= i1; i += kMaxRows) {
      group_rows<kKind, kMaxRows>(pg, nb, a, a_stride, i, lanes, bg, y + j0, ldy);
    }
    switch (i1 - i) {
      case 3:
        group_rows<kKind, 3>(pg, nb, a, a_stride, i, lanes, bg, y + j0, ldy);
        break;
      case 2:
        group_rows<kKind, 2>(pg, nb, a, a_stride, i, lanes, bg, y + j0, ldy);
        break;
      case 1:
        group_rows<kKind, 1>(pg, nb, a, a_stride, i, lanes, bg, y + j0, ldy);
        break;
      default:
        break;
    }
  }
}

}  // namespace

GemmFn avx512vnni_gemm_q23(DType type) {
  switch (type) {
    case DType::Q2_K:
      return &gemm<Kind::kQ2_K>;
    case DType::Q3_K:
      return &gemm<Kind::kQ3_K>;
    default:
      fail(ErrorCode::kUnsupported, "cpu", "K-quant packed weights: type ", name(type),
           " has no Q2_K / Q3_K packed kernel");
  }
}

}  // namespace af::cpu::quant::kpacked
