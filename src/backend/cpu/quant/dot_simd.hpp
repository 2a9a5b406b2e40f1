#pragma once
// 256-bit integer dot-product kernels, shared by the AVX2, AVX-512 and AVX-512 VNNI builds
// (included only from *_avx2.cpp / *_avx512.cpp / *_avx512vnni.cpp). `Ops` supplies the one
// ISA-specific step, the u8 x s8 dot of each 4-byte group into 8 int32 lanes; all integer sums
// are exact and the float steps follow the order defined in quant_kernels.hpp, so every ISA
// returns the scalar reference's bits.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "backend/cpu/quant/blocks.hpp"
#include "backend/cpu/quant/quant_kernels.hpp"

namespace af::cpu::quant::simd {

using af::quant::BlockQ4_0;
using af::quant::BlockQ4_1;
using af::quant::BlockQ4_K;
using af::quant::BlockQ5_0;
using af::quant::BlockQ5_1;
using af::quant::BlockQ6_K;
using af::quant::BlockQ8_0;
using af::quant::BlockQ8_K;
using af::quant::kQK;
using af::quant::kQKK;

inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m128i load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

// ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)), the reduction order of the reference.
inline float reduce_lanes(__m256 v) {
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

inline int hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}

// 16 nibbles -> 32 bytes: low nibbles (elements 0..15) then high nibbles (16..31).
inline __m256i unpack_nibbles(const uint8_t* qs) {
  const __m128i q = load128(qs);
  const __m128i m = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
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

// The 32 values of a legacy block: signed (symmetric types) or unsigned (types with a min).
struct Q8_0Decoder {
  using Block = BlockQ8_0;
  static constexpr bool kSigned = true;
  static constexpr bool kHasMin = false;
  static __m256i values(const Block& b) { return load256(b.qs); }
  static float min(const Block&) { return 0.f; }
};
struct Q4_0Decoder {
  using Block = BlockQ4_0;
  static constexpr bool kSigned = true;
  static constexpr bool kHasMin = false;
  static __m256i values(const Block& b) {
    return _mm256_sub_epi8(unpack_nibbles(b.qs), _mm256_set1_epi8(8));
  }
  static float min(const Block&) { return 0.f; }
};
struct Q4_1Decoder {
  using Block = BlockQ4_1;
  static constexpr bool kSigned = false;
  static constexpr bool kHasMin = true;
  static __m256i values(const Block& b) { return unpack_nibbles(b.qs); }
  static float min(const Block& b) { return half_to_float(b.m); }
};
struct Q5_0Decoder {
  using Block = BlockQ5_0;
  static constexpr bool kSigned = true;
  static constexpr bool kHasMin = false;
  static __m256i values(const Block& b) {
    const __m256i q = _mm256_or_si256(unpack_nibbles(b.qs), expand_high_bits(b.qh));
    return _mm256_sub_epi8(q, _mm256_set1_epi8(16));
  }
  static float min(const Block&) { return 0.f; }
};
struct Q5_1Decoder {
  using Block = BlockQ5_1;
  static constexpr bool kSigned = false;
  static constexpr bool kHasMin = true;
  static __m256i values(const Block& b) {
    return _mm256_or_si256(unpack_nibbles(b.qs), expand_high_bits(b.qh));
  }
  static float min(const Block& b) { return half_to_float(b.m); }
};

// MR activation rows x NR weight rows over the whole row.
template <class Ops, class Dec, int MR, int NR>
void legacy_tile(int64_t k, const uint8_t* w, int64_t w_stride, const uint8_t* a, int64_t a_stride,
                 float* y, int64_t ldy) {
  using Block = typename Dec::Block;
  __m256 acc[MR][NR];
  float acc_min[MR][NR];
  for (int r = 0; r < MR; ++r) {
    for (int c = 0; c < NR; ++c) {
      acc[r][c] = _mm256_setzero_ps();
      acc_min[r][c] = 0.f;
    }
  }
  const int64_t nb = k / kQK;
  for (int64_t b = 0; b < nb; ++b) {
    __m256i wu[NR], wv[NR];
    float dw[NR], mw[NR];
    for (int c = 0; c < NR; ++c) {
      const Block& blk = reinterpret_cast<const Block*>(w + c * w_stride)[b];
      wv[c] = Dec::values(blk);
      wu[c] = Dec::kSigned ? _mm256_abs_epi8(wv[c]) : wv[c];
      dw[c] = half_to_float(blk.d);
      mw[c] = Dec::min(blk);
    }
    for (int r = 0; r < MR; ++r) {
      const BlockQ8_0& ab = reinterpret_cast<const BlockQ8_0*>(a + r * a_stride)[b];
      const __m256i av = load256(ab.qs);
      const float da = half_to_float(ab.d);
      float suma = 0.f;
      if constexpr (Dec::kHasMin) {
        suma = static_cast<float>(hsum_epi32(Ops::dot(_mm256_set1_epi8(1), av)));
      }
      for (int c = 0; c < NR; ++c) {
        const __m256i sv = Dec::kSigned ? _mm256_sign_epi8(av, wv[c]) : av;
        const __m256 p = _mm256_cvtepi32_ps(Ops::dot(wu[c], sv));
        acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(dw[c] * da), p, acc[r][c]);
        if constexpr (Dec::kHasMin) acc_min[r][c] = std::fma(mw[c] * da, suma, acc_min[r][c]);
      }
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int c = 0; c < NR; ++c) y[r * ldy + c] = reduce_lanes(acc[r][c]) + acc_min[r][c];
  }
}

// Q4_K: per 64-element chunk, low nibbles are sub-block 2t and high nibbles sub-block 2t + 1.
struct Q4_KWeights {
  const BlockQ4_K* blk;
  int16_t scale[8];
  int16_t min[8];
  float d, dmin;
  void load(const BlockQ4_K& b) {
    blk = &b;
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      af::quant::k4_scale_min(j, b.scales, &sc, &m);
      scale[j] = sc;
      min[j] = m;
    }
    d = half_to_float(b.d);
    dmin = half_to_float(b.dmin);
  }
};

template <class Ops, int MR, int NR>
void q4_k_tile(int64_t k, const uint8_t* w, int64_t w_stride, const uint8_t* a, int64_t a_stride,
               float* y, int64_t ldy) {
  float acc[MR][NR] = {};
  const __m256i low_mask = _mm256_set1_epi8(0x0F);
  const int64_t nb = k / kQKK;
  for (int64_t b = 0; b < nb; ++b) {
    Q4_KWeights wb[NR];
    for (int c = 0; c < NR; ++c)
      wb[c].load(reinterpret_cast<const BlockQ4_K*>(w + c * w_stride)[b]);
    for (int r = 0; r < MR; ++r) {
      const BlockQ8_K& ab = reinterpret_cast<const BlockQ8_K*>(a + r * a_stride)[b];
      __m256i sum[NR];
      for (int c = 0; c < NR; ++c) sum[c] = _mm256_setzero_si256();
      for (int t = 0; t < 4; ++t) {
        const __m256i a_lo = load256(ab.qs + 64 * t);
        const __m256i a_hi = load256(ab.qs + 64 * t + 32);
        for (int c = 0; c < NR; ++c) {
          const __m256i q = load256(wb[c].blk->qs + 32 * t);
          const __m256i lo = _mm256_and_si256(q, low_mask);
          const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low_mask);
          const __m256i p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a_lo),
                                                 _mm256_set1_epi16(wb[c].scale[2 * t]));
          const __m256i p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a_hi),
                                                 _mm256_set1_epi16(wb[c].scale[2 * t + 1]));
          sum[c] = _mm256_add_epi32(sum[c], _mm256_add_epi32(p_lo, p_hi));
        }
      }
      for (int c = 0; c < NR; ++c) {
        int summ = 0;
        for (int j = 0; j < 8; ++j) summ += wb[c].min[j] * (ab.bsums[2 * j] + ab.bsums[2 * j + 1]);
        const int sumi = hsum_epi32(sum[c]);
        acc[r][c] = std::fma(wb[c].d * ab.d, static_cast<float>(sumi), acc[r][c]);
        acc[r][c] = std::fma(-(wb[c].dmin * ab.d), static_cast<float>(summ), acc[r][c]);
      }
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int c = 0; c < NR; ++c) y[r * ldy + c] = acc[r][c];
  }
}

template <class Ops, int MR, int NR>
void q6_k_tile(int64_t k, const uint8_t* w, int64_t w_stride, const uint8_t* a, int64_t a_stride,
               float* y, int64_t ldy) {
  float acc[MR][NR] = {};
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  const __m256i m30 = _mm256_set1_epi8(0x30);
  const int64_t nb = k / kQKK;
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ6_K* wb[NR];
    for (int c = 0; c < NR; ++c) wb[c] = reinterpret_cast<const BlockQ6_K*>(w + c * w_stride) + b;
    for (int r = 0; r < MR; ++r) {
      const BlockQ8_K& ab = reinterpret_cast<const BlockQ8_K*>(a + r * a_stride)[b];
      for (int c = 0; c < NR; ++c) {
        const BlockQ6_K& q6 = *wb[c];
        __m256i sum = _mm256_setzero_si256();
        for (int n = 0; n < 2; ++n) {
          const __m256i ql0 = load256(q6.ql + 64 * n);
          const __m256i ql1 = load256(q6.ql + 64 * n + 32);
          const __m256i qh = load256(q6.qh + 32 * n);
          const __m256i q[4] = {
              _mm256_or_si256(_mm256_and_si256(ql0, m4),
                              _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30)),
              _mm256_or_si256(_mm256_and_si256(ql1, m4),
                              _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30)),
              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                              _mm256_and_si256(qh, m30)),
              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                              _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30)),
          };
          for (int s = 0; s < 4; ++s) {
            const int j = 8 * n + 2 * s;
            const __m256i scales =
                _mm256_set_m128i(_mm_set1_epi16(q6.scales[j + 1]), _mm_set1_epi16(q6.scales[j]));
            const __m256i av = load256(ab.qs + 128 * n + 32 * s);
            sum = _mm256_add_epi32(sum, _mm256_madd_epi16(_mm256_maddubs_epi16(q[s], av), scales));
          }
        }
        int offset = 0;
        for (int j = 0; j < 16; ++j) offset += q6.scales[j] * ab.bsums[j];
        const int sumi = hsum_epi32(sum) - 32 * offset;
        acc[r][c] = std::fma(half_to_float(q6.d) * ab.d, static_cast<float>(sumi), acc[r][c]);
      }
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int c = 0; c < NR; ++c) y[r * ldy + c] = acc[r][c];
  }
}

using TileFn = void (*)(int64_t k, const uint8_t* w, int64_t w_stride, const uint8_t* a,
                        int64_t a_stride, float* y, int64_t ldy);

// Covers na x nw with MR x NR tiles, 1 x NR tiles for leftover rows and 1 x 1 at the edges.
// Each output is computed by the same arithmetic whichever tile it falls in.
template <TileFn kFull, TileFn kRow, TileFn kOne, int MR, int NR>
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
    for (; j + NR <= nw; j += NR) {
      kRow(k, w + j * w_stride, w_stride, a + i * a_stride, a_stride, y + i * ldy + j, ldy);
    }
    for (; j < nw; ++j) {
      kOne(k, w + j * w_stride, w_stride, a + i * a_stride, a_stride, y + i * ldy + j, ldy);
    }
  }
}

template <class Ops, class Dec, int MR, int NR>
constexpr QuantDotFn legacy_dot = tiled<legacy_tile<Ops, Dec, MR, NR>, legacy_tile<Ops, Dec, 1, NR>,
                                        legacy_tile<Ops, Dec, 1, 1>, MR, NR>;
template <class Ops, int MR, int NR>
constexpr QuantDotFn q4_k_dot =
    tiled<q4_k_tile<Ops, MR, NR>, q4_k_tile<Ops, 1, NR>, q4_k_tile<Ops, 1, 1>, MR, NR>;
template <class Ops, int MR, int NR>
constexpr QuantDotFn q6_k_dot =
    tiled<q6_k_tile<Ops, MR, NR>, q6_k_tile<Ops, 1, NR>, q6_k_tile<Ops, 1, 1>, MR, NR>;

// The table for one ISA: SIMD kernels where written, the scalar ones elsewhere.
template <class Ops, int MR, int NR>
QuantKernels make_table(const char* isa) {
  QuantKernels t = scalar_quant_kernels();
  t.isa = isa;
  t.dot[kSlotQ8_0] = legacy_dot<Ops, Q8_0Decoder, MR, NR>;
  t.dot[kSlotQ4_0] = legacy_dot<Ops, Q4_0Decoder, MR, NR>;
  t.dot[kSlotQ4_1] = legacy_dot<Ops, Q4_1Decoder, MR, NR>;
  t.dot[kSlotQ5_0] = legacy_dot<Ops, Q5_0Decoder, MR, NR>;
  t.dot[kSlotQ5_1] = legacy_dot<Ops, Q5_1Decoder, MR, NR>;
  t.dot[kSlotQ4_K] = q4_k_dot<Ops, MR, NR>;
  t.dot[kSlotQ6_K] = q6_k_dot<Ops, MR, NR>;
  return t;
}

}  // namespace af::cpu::quant::simd
