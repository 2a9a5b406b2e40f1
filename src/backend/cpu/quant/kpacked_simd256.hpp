#pragma once
// The 256-bit matmul kernels over the K-quant packed layout of kpacked.hpp, over Ops (AVX2 or
// AVX-VNNI). Include only from *_avx2.cpp / *_avxvnni.cpp, which are compiled for those ISAs.
//
// The layout keeps 16 rows per 64-byte chunk, row r in 32-bit lane r: bytes [0, 32) of every
// chunk are rows 0..7 and bytes [32, 64) rows 8..15, so a 256-bit lane still holds one row and
// the kernel runs a super-block as two halves of 8 rows. The first half streams the
// super-block's lines from memory, the second finds them in L1: each weight byte comes from
// memory once, and no byte is shuffled.
//
// Ops supplies the u8 x s8 steps of one sub-block, with its per-row scale:
//   Scale scale(s32): the scale (one int32 per lane) in the form dot needs
//   part start(init, s): a sub-block's partial sum that starts from init (an int32 per lane)
//   part dot(part, w, a, s): part + the 4-byte group sums of w * a
//   sumi finish(sumi, part, s): sumi + s * (the sub-block's exact integer sum)
// Every step is exact integer arithmetic, so the sums (and, through the same float steps in the
// same order, the outputs) equal the scalar reference bit for bit.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "af/core/error.hpp"
#include "backend/cpu/quant/blocks.hpp"
#include "backend/cpu/quant/kpacked.hpp"

namespace af::cpu::quant::kpacked::simd {

using af::quant::BlockQ8_K;
using af::quant::kQKK;

inline __m256i load(const uint8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// 4 activation bytes broadcast to every lane.
inline __m256i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// Two int16 in one int32 (lo, hi), broadcast: the activation side of vpmaddwd.
inline __m256i bcast_pair(int lo, int hi) {
  return _mm256_set1_epi32(
      static_cast<int32_t>(static_cast<uint16_t>(lo) | (static_cast<uint32_t>(hi) << 16)));
}

// 8 fp16 values as floats.
inline __m256 halves(const uint8_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// Bit `bit` of every byte of v at bit 4, masked: Q5_K's fifth bits beside the low nibble. The
// unrolled loops make `bit` a constant.
inline __m256i fifth_bits(__m256i qh, int bit) {
  const __m256i shifted = bit < 4 ? _mm256_slli_epi16(qh, 4 - bit) : _mm256_srli_epi16(qh, bit - 4);
  return _mm256_and_si256(shifted, _mm256_set1_epi8(0x10));
}

// Q4_K (kFive false) and Q5_K: rows 8 h .. 8 h + 7 of one packed super-block times one
// activation row.
template <class Ops, bool kFive>
inline __m256 k4_half(const uint8_t* pb, int h, const BlockQ8_K& ab, __m256 acc) {
  const __m256i m3f = _mm256_set1_epi32(0x3f3f3f3f);
  const __m256i m0f = _mm256_set1_epi32(0x0f0f0f0f);
  const __m256i m30 = _mm256_set1_epi32(0x30303030);
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i byte = _mm256_set1_epi32(0xff);
  const int off = 32 * h;
  const __m256i u0 = load(pb + 64 + off), u1 = load(pb + 128 + off), u2 = load(pb + 192 + off);
  // Scales 0..3 in the bytes of sc_lo, 4..7 in sc_hi (as k4_scale_min).
  const __m256i sc_lo = _mm256_and_si256(u0, m3f);
  const __m256i sc_hi =
      _mm256_or_si256(_mm256_and_si256(u2, m0f), _mm256_and_si256(_mm256_srli_epi32(u0, 2), m30));
  __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 4
  for (int t = 0; t < 4; ++t) {
    const __m256i sc_src = t < 2 ? sc_lo : sc_hi;
    const auto s_lo = Ops::scale(_mm256_and_si256(_mm256_srli_epi32(sc_src, 16 * (t & 1)), byte));
    const auto s_hi =
        Ops::scale(_mm256_and_si256(_mm256_srli_epi32(sc_src, 16 * (t & 1) + 8), byte));
    auto lo = Ops::start(_mm256_setzero_si256(), s_lo);
    auto hi = Ops::start(_mm256_setzero_si256(), s_hi);
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
      const __m256i w = load(pb + 256 + 64 * (8 * t + c) + off);
      __m256i wl = _mm256_and_si256(w, low4);
      __m256i wh = _mm256_and_si256(_mm256_srli_epi16(w, 4), low4);
      if constexpr (kFive) {
        const __m256i qh = load(pb + 2304 + 64 * c + off);
        wl = _mm256_or_si256(wl, fifth_bits(qh, 2 * t));
        wh = _mm256_or_si256(wh, fifth_bits(qh, 2 * t + 1));
      }
      lo = Ops::dot(lo, wl, bcast4(ab.qs + 64 * t + 4 * c), s_lo);
      hi = Ops::dot(hi, wh, bcast4(ab.qs + 64 * t + 32 + 4 * c), s_hi);
    }
    sumi = Ops::finish(Ops::finish(sumi, lo, s_lo), hi, s_hi);
  }
  // The mins: int16 pairs (m0, m2), (m1, m3), (m4, m6), (m5, m7) against the activation
  // sub-block sums, as vpmaddwd (exact: the products and their pair sums fit int32).
  const __m256i m_lo = _mm256_and_si256(u1, m3f);
  const __m256i m_hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u2, 4), m0f),
                                       _mm256_and_si256(_mm256_srli_epi32(u1, 2), m30));
  const __m256i wmask = _mm256_set1_epi32(0x00ff00ff);
  int s[8];
  for (int j = 0; j < 8; ++j) s[j] = ab.bsums[2 * j] + ab.bsums[2 * j + 1];
  __m256i summ = _mm256_madd_epi16(_mm256_and_si256(m_lo, wmask), bcast_pair(s[0], s[2]));
  summ =
      _mm256_add_epi32(summ, _mm256_madd_epi16(_mm256_and_si256(_mm256_srli_epi32(m_lo, 8), wmask),
                                               bcast_pair(s[1], s[3])));
  summ = _mm256_add_epi32(summ,
                          _mm256_madd_epi16(_mm256_and_si256(m_hi, wmask), bcast_pair(s[4], s[6])));
  summ =
      _mm256_add_epi32(summ, _mm256_madd_epi16(_mm256_and_si256(_mm256_srli_epi32(m_hi, 8), wmask),
                                               bcast_pair(s[5], s[7])));
  const __m256 da = _mm256_set1_ps(ab.d);
  const __m256 d = halves(pb + 16 * h), dmin = halves(pb + 32 + 16 * h);
  acc = _mm256_fmadd_ps(_mm256_mul_ps(d, da), _mm256_cvtepi32_ps(sumi), acc);
  return _mm256_fnmadd_ps(_mm256_mul_ps(dmin, da), _mm256_cvtepi32_ps(summ), acc);
}

// Q6_K: rows 8 h .. 8 h + 7 of one packed super-block times one activation row.
template <class Ops>
inline __m256 q6_k_half(const uint8_t* pb, int h2, const BlockQ8_K& ab, __m256 acc) {
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i m30 = _mm256_set1_epi8(0x30);
  const int off2 = 32 * h2;
  __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 2
  for (int n = 0; n < 2; ++n) {
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      // Sub-blocks (of 16) 8n + 2h + q / 2 (low nibbles, q = 0, 1) and 8n + 4 + 2h + q / 2
      // (high nibbles, q = 2, 3); each starts at -32 * its activation sum, so it ends as the
      // exact sum of (u - 32) * a.
      const int js[4] = {8 * n + 2 * h, 8 * n + 2 * h + 1, 8 * n + 4 + 2 * h, 8 * n + 5 + 2 * h};
      decltype(Ops::scale(sumi)) s[4];
      decltype(Ops::start(sumi, s[0])) part[4];
      for (int q = 0; q < 4; ++q) {
        s[q] = Ops::scale(_mm256_cvtepi8_epi32(
            _mm_loadl_epi64(reinterpret_cast<const __m128i*>(pb + 32 + 16 * js[q] + 8 * h2))));
        part[q] = Ops::start(_mm256_set1_epi32(-32 * ab.bsums[js[q]]), s[q]);
      }
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) {
        const __m256i l = load(pb + 288 + 64 * (16 * n + 8 * h + c) + off2);
        const __m256i qh = load(pb + 2336 + 64 * (8 * n + c) + off2);
        const __m256i hl = h == 0 ? _mm256_slli_epi16(qh, 4) : _mm256_slli_epi16(qh, 2);
        const __m256i hh = h == 0 ? qh : _mm256_srli_epi16(qh, 2);
        const __m256i ul = _mm256_or_si256(_mm256_and_si256(l, low4), _mm256_and_si256(hl, m30));
        const __m256i uh = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l, 4), low4),
                                           _mm256_and_si256(hh, m30));
        const int off = 128 * n + 32 * h + 4 * c;
        part[c / 4] = Ops::dot(part[c / 4], ul, bcast4(ab.qs + off), s[c / 4]);
        part[2 + c / 4] = Ops::dot(part[2 + c / 4], uh, bcast4(ab.qs + off + 64), s[2 + c / 4]);
      }
      for (int q = 0; q < 4; ++q) sumi = Ops::finish(sumi, part[q], s[q]);
    }
  }
  const __m256 d = halves(pb + 16 * h2);
  return _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(ab.d)), _mm256_cvtepi32_ps(sumi), acc);
}

enum class Kind { kQ4_K, kQ5_K, kQ6_K };

// Super-blocks ahead that group_row prefetches. Measured (Q4_K / Q6_K 8960x1536 m=1 streamed,
// 1 thread, CPU time, busy VM): none 1057 / 1956 us, 1 ahead 825 / 1183, 2 ahead 711 / 1018,
// 4 ahead 781 / 1100; the GGUF-row kernels 780-840 / 1125-1165.
constexpr int kPrefetchBlocks = 2;

template <Kind kKind>
constexpr int64_t kBlockBytes = kKind == Kind::kQ4_K   ? 2304
                                : kKind == Kind::kQ5_K ? 2816
                                                       : 3360;

// Activation row i times one group's nb packed super-blocks: the group's `rows` outputs (1..16)
// at y (plus bias).
template <class Ops, Kind kKind>
void group_row(const uint8_t* pg, int64_t nb, const BlockQ8_K* a, int64_t rows, const float* bias,
               float* y) {
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* pb = pg + b * kBlockBytes<kKind>;
    // Every line of a super-block kPrefetchBlocks ahead (past the group's end too: the groups
    // of a task are contiguous, and a prefetch never faults). The halves take a line 32 bytes
    // at a time, so the out-of-order window covers half the lines of the 512-bit kernel's, and
    // the hardware prefetcher alone leaves the stream latency-bound.
    for (int64_t o = 0; o < kBlockBytes<kKind>; o += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(pb + kPrefetchBlocks * kBlockBytes<kKind> + o),
                   _MM_HINT_T0);
    }
    for (int h = 0; h < 2; ++h) {
      if constexpr (kKind == Kind::kQ6_K) {
        acc[h] = q6_k_half<Ops>(pb, h, a[b], acc[h]);
      } else {
        acc[h] = k4_half<Ops, kKind == Kind::kQ5_K>(pb, h, a[b], acc[h]);
      }
    }
  }
  alignas(32) float out[16];
  _mm256_store_ps(out, acc[0]);
  _mm256_store_ps(out + 8, acc[1]);
  for (int64_t r = 0; r < rows; ++r) y[r] = bias ? out[r] + bias[r] : out[r];
}

template <class Ops, Kind kKind>
void gemm(const uint8_t* w, int64_t g0, int64_t g1, int64_t n, int64_t k, const uint8_t* a,
          int64_t a_stride, int64_t i0, int64_t i1, const float* bias, float* y, int64_t ldy) {
  const int64_t nb = k / kQKK;
  for (int64_t g = g0; g < g1; ++g) {
    const uint8_t* pg = w + (g - g0) * nb * kBlockBytes<kKind>;
    const int64_t j0 = g * kGroupRows;
    const int64_t rows = std::min<int64_t>(kGroupRows, n - j0);
    // Rows after the first find the group in L2 (at most 16 x 210 x k / 256 bytes).
    for (int64_t i = i0; i < i1; ++i) {
      group_row<Ops, kKind>(pg, nb, reinterpret_cast<const BlockQ8_K*>(a + i * a_stride), rows,
                            bias ? bias + j0 : nullptr, y + i * ldy + j0);
    }
  }
}

template <class Ops>
GemmFn gemm_for(DType type) {
  switch (type) {
    case DType::Q4_K:
      return &gemm<Ops, Kind::kQ4_K>;
    case DType::Q5_K:
      return &gemm<Ops, Kind::kQ5_K>;
    case DType::Q6_K:
      return &gemm<Ops, Kind::kQ6_K>;
    default:
      fail(ErrorCode::kUnsupported, "cpu", "K-quant packed weights: type ", name(type),
           " has no packed kernel");
  }
}

}  // namespace af::cpu::quant::kpacked::simd
