// AVX-512 VNNI matmul kernels over the K-quant packed layout (kpacked.hpp).
//
// Lane r of every vector is weight row r of the group: vpdpbusd multiplies the 16 rows' 4
// unsigned quants with 4 broadcast int8 activations, so each sub-block's exact integer sum lands
// in its row's lane with no horizontal reduction, and the float steps (one fma per super-block,
// in order) run on 16 rows at once with the bits of the scalar reference.
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

inline __m512 halves(const uint8_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

inline const BlockQ8_K& act_block(const uint8_t* a, int64_t a_stride, int64_t i, int64_t b) {
  return reinterpret_cast<const BlockQ8_K*>(a + i * a_stride)[b];
}

// Two int16 in one int32 (lo, hi), broadcast: the activation side of vpdpwssd.
inline __m512i bcast_pair(int lo, int hi) {
  return _mm512_set1_epi32(
      static_cast<int32_t>(static_cast<uint16_t>(lo) | (static_cast<uint32_t>(hi) << 16)));
}

// Bit `bit` of every byte of v at bit 4 (other bits: garbage to mask off). The unrolled loops
// make `bit` a constant.
inline __m512i shift_bits(__m512i v, int bit) {
  return bit < 4 ? _mm512_slli_epi16(v, 4 - bit) : _mm512_srli_epi16(v, bit - 4);
}

// Q4_K (kFive false) and Q5_K: one packed super-block of a group times MR activation rows.
template <bool kFive, int MR>
inline void k4_block(const uint8_t* pb, const BlockQ8_K* const* ab, __m512* acc) {
  const __m512i m3f = _mm512_set1_epi32(0x3f3f3f3f);
  const __m512i m0f = _mm512_set1_epi32(0x0f0f0f0f);
  const __m512i m30 = _mm512_set1_epi32(0x30303030);
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  const __m512i byte = _mm512_set1_epi32(0xff);
  const __m512i u0 = load(pb + 64), u1 = load(pb + 128), u2 = load(pb + 192);
  // Scales 0..3 and mins 0..3 in bytes of sc_lo / m_lo, 4..7 in sc_hi / m_hi (as k4_scale_min).
  const __m512i sc_lo = _mm512_and_si512(u0, m3f);
  const __m512i m_lo = _mm512_and_si512(u1, m3f);
  const __m512i sc_hi =
      _mm512_or_si512(_mm512_and_si512(u2, m0f), _mm512_and_si512(_mm512_srli_epi32(u0, 2), m30));
  const __m512i m_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u2, 4), m0f),
                                       _mm512_and_si512(_mm512_srli_epi32(u1, 2), m30));
  // Mins as int16 pairs (m0, m2), (m1, m3), (m4, m6), (m5, m7) for vpdpwssd.
  const __m512i wmask = _mm512_set1_epi32(0x00ff00ff);
  const __m512i m02 = _mm512_and_si512(m_lo, wmask);
  const __m512i m13 = _mm512_and_si512(_mm512_srli_epi32(m_lo, 8), wmask);
  const __m512i m46 = _mm512_and_si512(m_hi, wmask);
  const __m512i m57 = _mm512_and_si512(_mm512_srli_epi32(m_hi, 8), wmask);
  __m512i sumi[MR], summ[MR];
  for (int r = 0; r < MR; ++r) {
    int s[8];
    for (int j = 0; j < 8; ++j) s[j] = ab[r]->bsums[2 * j] + ab[r]->bsums[2 * j + 1];
    __m512i m = _mm512_dpwssd_epi32(_mm512_setzero_si512(), m02, bcast_pair(s[0], s[2]));
    m = _mm512_dpwssd_epi32(m, m13, bcast_pair(s[1], s[3]));
    m = _mm512_dpwssd_epi32(m, m46, bcast_pair(s[4], s[6]));
    summ[r] = _mm512_dpwssd_epi32(m, m57, bcast_pair(s[5], s[7]));
    sumi[r] = _mm512_setzero_si512();
  }
#pragma GCC unroll 4
  for (int t = 0; t < 4; ++t) {
    const __m512i sc_src = t < 2 ? sc_lo : sc_hi;
    const __m512i scale_lo = _mm512_and_si512(_mm512_srli_epi32(sc_src, 16 * (t & 1)), byte);
    const __m512i scale_hi = _mm512_and_si512(_mm512_srli_epi32(sc_src, 16 * (t & 1) + 8), byte);
    __m512i lo[MR], hi[MR];
    for (int r = 0; r < MR; ++r) lo[r] = hi[r] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
      const __m512i w = load(pb + 256 + 64 * (8 * t + c));
      __m512i wl = _mm512_and_si512(w, low4);
      __m512i wh = _mm512_and_si512(_mm512_srli_epi16(w, 4), low4);
      if constexpr (kFive) {
        // Bits 2 t and 2 t + 1 of each qh byte moved to bit 4 (0xf8: a | (b & 0x10)).
        const __m512i qh = load(pb + 2304 + 64 * c);
        const __m512i bit5 = _mm512_set1_epi8(0x10);
        wl = _mm512_ternarylogic_epi32(wl, shift_bits(qh, 2 * t), bit5, 0xf8);
        wh = _mm512_ternarylogic_epi32(wh, shift_bits(qh, 2 * t + 1), bit5, 0xf8);
      }
      for (int r = 0; r < MR; ++r) {
        lo[r] = _mm512_dpbusd_epi32(lo[r], wl, bcast4(ab[r]->qs + 64 * t + 4 * c));
        hi[r] = _mm512_dpbusd_epi32(hi[r], wh, bcast4(ab[r]->qs + 64 * t + 32 + 4 * c));
      }
    }
    for (int r = 0; r < MR; ++r) {
      sumi[r] = _mm512_add_epi32(sumi[r], _mm512_mullo_epi32(lo[r], scale_lo));
      sumi[r] = _mm512_add_epi32(sumi[r], _mm512_mullo_epi32(hi[r], scale_hi));
    }
  }
  const __m512 d = halves(pb), dmin = halves(pb + 32);
  for (int r = 0; r < MR; ++r) {
    const __m512 da = _mm512_set1_ps(ab[r]->d);
    acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(d, da), _mm512_cvtepi32_ps(sumi[r]), acc[r]);
    acc[r] = _mm512_fnmadd_ps(_mm512_mul_ps(dmin, da), _mm512_cvtepi32_ps(summ[r]), acc[r]);
  }
}

// Q6_K: one packed super-block of a group times MR activation rows.
template <int MR>
inline void q6_k_block(const uint8_t* pb, const BlockQ8_K* const* ab, __m512* acc) {
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  const __m512i m30 = _mm512_set1_epi8(0x30);
  __m512i sumi[MR];
  for (int r = 0; r < MR; ++r) sumi[r] = _mm512_setzero_si512();
#pragma GCC unroll 2
  for (int n = 0; n < 2; ++n) {
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      // Sub-blocks (of 16) 8n + 2h + q / 2 (low nibbles, q = 0, 1) and 8n + 4 + 2h + q / 2
      // (high nibbles, q = 2, 3); each starts at -32 * its activation sum, so it ends as the
      // exact sum of (u - 32) * a.
      const int js[4] = {8 * n + 2 * h, 8 * n + 2 * h + 1, 8 * n + 4 + 2 * h, 8 * n + 5 + 2 * h};
      __m512i part[MR][4];
      for (int r = 0; r < MR; ++r) {
        for (int q = 0; q < 4; ++q) part[r][q] = _mm512_set1_epi32(-32 * ab[r]->bsums[js[q]]);
      }
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) {
        const __m512i l = load(pb + 288 + 64 * (16 * n + 8 * h + c));
        const __m512i qh = load(pb + 2336 + 64 * (8 * n + c));
        const __m512i hl = h == 0 ? _mm512_slli_epi16(qh, 4) : _mm512_slli_epi16(qh, 2);
        const __m512i hh = h == 0 ? qh : _mm512_srli_epi16(qh, 2);
        const __m512i ul = _mm512_or_si512(_mm512_and_si512(l, low4), _mm512_and_si512(hl, m30));
        const __m512i uh = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), low4),
                                           _mm512_and_si512(hh, m30));
        const int off = 128 * n + 32 * h + 4 * c;
        for (int r = 0; r < MR; ++r) {
          part[r][c / 4] = _mm512_dpbusd_epi32(part[r][c / 4], ul, bcast4(ab[r]->qs + off));
          part[r][2 + c / 4] =
              _mm512_dpbusd_epi32(part[r][2 + c / 4], uh, bcast4(ab[r]->qs + off + 64));
        }
      }
      for (int q = 0; q < 4; ++q) {
        const __m512i scale = _mm512_cvtepi8_epi32(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(pb + 32 + 16 * js[q])));
        for (int r = 0; r < MR; ++r) {
          sumi[r] = _mm512_add_epi32(sumi[r], _mm512_mullo_epi32(part[r][q], scale));
        }
      }
    }
  }
  const __m512 d = halves(pb);
  for (int r = 0; r < MR; ++r) {
    const __m512 da = _mm512_set1_ps(ab[r]->d);
    acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(d, da), _mm512_cvtepi32_ps(sumi[r]), acc[r]);
  }
}

enum class Kind { kQ4_K, kQ5_K, kQ6_K };

template <Kind kKind>
constexpr int64_t kBlockBytes = kKind == Kind::kQ4_K   ? 2304
                                : kKind == Kind::kQ5_K ? 2816
                                                       : 3360;

// Rows [i, i + MR) of the output times one group's nb packed super-blocks.
template <Kind kKind, int MR>
void group_rows(const uint8_t* pg, int64_t nb, const uint8_t* a, int64_t a_stride, int64_t i,
                __mmask16 lanes, const float* bias, float* y, int64_t ldy) {
  __m512 acc[MR];
  for (int r = 0; r < MR; ++r) acc[r] = _mm512_setzero_ps();
  const BlockQ8_K* ab[MR];
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* pb = pg + b * kBlockBytes<kKind>;
    // The next super-block's first lines while this one computes (the stream is sequential,
    // this only runs the hardware prefetcher ahead at group edges).
    _mm_prefetch(reinterpret_cast<const char*>(pb + 2 * kBlockBytes<kKind>), _MM_HINT_T0);
    for (int r = 0; r < MR; ++r) ab[r] = &act_block(a, a_stride, i + r, b);
    if constexpr (kKind == Kind::kQ6_K) {
      q6_k_block<MR>(pb, ab, acc);
    } else {
      k4_block<kKind == Kind::kQ5_K, MR>(pb, ab, acc);
    }
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

GemmFn avx512vnni_gemm(DType type) {
  switch (type) {
    case DType::Q2_K:
    case DType::Q3_K:
      return avx512vnni_gemm_q23(type);
    case DType::Q4_K:
      return &gemm<Kind::kQ4_K>;
    case DType::Q5_K:
      return &gemm<Kind::kQ5_K>;
    case DType::Q6_K:
      return &gemm<Kind::kQ6_K>;
    default:
      fail(ErrorCode::kUnsupported, "cpu", "K-quant packed weights: type ", name(type),
           " has no packed kernel");
  }
}

}  // namespace af::cpu::quant::kpacked
