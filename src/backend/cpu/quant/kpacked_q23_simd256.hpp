#pragma once
// The 256-bit Q2_K / Q3_K kernels over the K-quant packed layout of kpacked.hpp, over the Ops of
// kpacked_simd256.hpp (AVX2 or AVX-VNNI). Include only from *_avx2.cpp / *_avxvnni.cpp.
//
// As there, a super-block runs as two halves of 8 rows (bytes [0, 32) and [32, 64) of every
// 64-byte chunk), the second half finding the lines in L1. A sub-block's part starts at 0
// (Q2_K) or -4 x its activation sum (Q3_K, whose quants are u - 4), sums the unsigned quants
// times the activations, and Ops applies the sub-block's scale; Q2_K's mins go through
// vpmaddwd against the activation sums. All integer steps are exact, the float steps those of
// the scalar reference, so the outputs are its bits.
#include "backend/cpu/quant/kpacked_simd256.hpp"

namespace af::cpu::quant::kpacked::simd {

// Bits 2 s of every byte of q at bits 0-1 (other bits zero).
inline __m256i two_bits(__m256i q, int s) {
  return _mm256_and_si256(_mm256_srli_epi16(q, 2 * s), _mm256_set1_epi8(3));
}

// Bit `bit` of every hmask byte at bit 2, masked.
inline __m256i third_bit(__m256i hm, int bit) {
  const __m256i moved = bit < 2 ? _mm256_slli_epi16(hm, 2 - bit) : _mm256_srli_epi16(hm, bit - 2);
  return _mm256_and_si256(moved, _mm256_set1_epi8(4));
}

// a | (b & mask).
inline __m256i or_masked(__m256i a, __m256i b, __m256i mask) {
  return _mm256_or_si256(a, _mm256_and_si256(b, mask));
}

// The 16 six-bit Q3_K scales of rows 8 h .. 8 h + 7, 4 per vector: byte i of s[q] holds scale
// 4 q + i + 32 (q3k_scale before its "- 32").
inline void q3_k_scales(const uint8_t* pb, int h, __m256i* s) {
  const int off = 32 * h;
  const __m256i w0 = load(pb + 32 + off), w1 = load(pb + 96 + off), w2 = load(pb + 160 + off);
  const __m256i m0f = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
  s[0] = or_masked(_mm256_and_si256(w0, m0f), _mm256_slli_epi32(w2, 4), m30);
  s[1] = or_masked(_mm256_and_si256(w1, m0f), _mm256_slli_epi32(w2, 2), m30);
  s[2] = or_masked(_mm256_and_si256(_mm256_srli_epi32(w0, 4), m0f), w2, m30);
  s[3] = or_masked(_mm256_and_si256(_mm256_srli_epi32(w1, 4), m0f), _mm256_srli_epi32(w2, 2), m30);
}

// Q2_K (kThree false) and Q3_K: rows 8 h .. 8 h + 7 of one packed super-block times one
// activation row.
template <class Ops, bool kThree>
inline __m256 q23_half(const uint8_t* pb, int h, const BlockQ8_K& ab, __m256 acc) {
  const int off = 32 * h;
  constexpr int kQs = kThree ? 224 : 320;
  __m256i sc[4];  // byte i of sc[w]: the scale byte of sub-block 4 w + i (Q2_K: with its min)
  if constexpr (kThree) {
    q3_k_scales(pb, h, sc);
  } else {
    for (int w = 0; w < 4; ++w) sc[w] = load(pb + 64 + 64 * w + off);
  }
  __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 2
  for (int n = 0; n < 2; ++n) {
#pragma GCC unroll 4
    for (int s = 0; s < 4; ++s) {
      // Chunks c < 4 hold sub-block 8 n + 2 s, chunks c >= 4 the next one.
      const int j = 8 * n + 2 * s;
      decltype(Ops::scale(sumi)) scale[2];
      decltype(Ops::start(sumi, scale[0])) part[2];
      for (int q = 0; q < 2; ++q) {
        const __m256i b = _mm256_and_si256(_mm256_srli_epi32(sc[(j + q) / 4], 8 * ((j + q) % 4)),
                                           _mm256_set1_epi32(kThree ? 0xff : 0x0f));
        scale[q] = Ops::scale(kThree ? _mm256_sub_epi32(b, _mm256_set1_epi32(32)) : b);
        part[q] = Ops::start(
            kThree ? _mm256_set1_epi32(-4 * ab.bsums[j + q]) : _mm256_setzero_si256(), scale[q]);
      }
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) {
        __m256i u = two_bits(load(pb + kQs + 64 * (8 * n + c) + off), s);
        if constexpr (kThree)
          u = _mm256_or_si256(u, third_bit(load(pb + 1248 + 64 * c + off), 4 * n + s));
        part[c / 4] =
            Ops::dot(part[c / 4], u, bcast4(ab.qs + 128 * n + 32 * s + 4 * c), scale[c / 4]);
      }
      sumi = Ops::finish(Ops::finish(sumi, part[0], scale[0]), part[1], scale[1]);
    }
  }
  const __m256 da = _mm256_set1_ps(ab.d);
  acc = _mm256_fmadd_ps(_mm256_mul_ps(halves(pb + 16 * h), da), _mm256_cvtepi32_ps(sumi), acc);
  if constexpr (!kThree) {
    // The mins (high nibbles) as int16 pairs (4 w, 4 w + 2) and (4 w + 1, 4 w + 3) against the
    // activation sums of those sub-blocks (exact: products and pair sums fit int32).
    const __m256i nib = _mm256_set1_epi32(0x000f000f);
    __m256i summ = _mm256_setzero_si256();
    for (int w = 0; w < 4; ++w) {
      const int16_t* bs = ab.bsums + 4 * w;
      summ = _mm256_add_epi32(summ,
                              _mm256_madd_epi16(_mm256_and_si256(_mm256_srli_epi32(sc[w], 4), nib),
                                                bcast_pair(bs[0], bs[2])));
      summ = _mm256_add_epi32(summ,
                              _mm256_madd_epi16(_mm256_and_si256(_mm256_srli_epi32(sc[w], 12), nib),
                                                bcast_pair(bs[1], bs[3])));
    }
    acc = _mm256_fnmadd_ps(_mm256_mul_ps(halves(pb + 32 + 16 * h), da), _mm256_cvtepi32_ps(summ),
                           acc);
  }
  return acc;
}

// Activation row i times one group's nb packed super-blocks (as group_row).
template <class Ops, bool kThree>
void q23_group_row(const uint8_t* pg, int64_t nb, const BlockQ8_K* a, int64_t rows,
                   const float* bias, float* y) {
  constexpr int64_t kBytes = kThree ? 1760 : 1344;
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* pb = pg + b * kBytes;
    for (int64_t o = 0; o < kBytes; o += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(pb + kPrefetchBlocks * kBytes + o), _MM_HINT_T0);
    }
    for (int h = 0; h < 2; ++h) acc[h] = q23_half<Ops, kThree>(pb, h, a[b], acc[h]);
  }
  alignas(32) float out[16];
  _mm256_store_ps(out, acc[0]);
  _mm256_store_ps(out + 8, acc[1]);
  for (int64_t r = 0; r < rows; ++r) y[r] = bias ? out[r] + bias[r] : out[r];
}

template <class Ops, bool kThree>
void q23_gemm(const uint8_t* w, int64_t g0, int64_t g1, int64_t n, int64_t k, const uint8_t* a,
              int64_t a_stride, int64_t i0, int64_t i1, const float* bias, float* y, int64_t ldy) {
  const int64_t nb = k / kQKK;
  const int64_t group_bytes = nb * (kThree ? 1760 : 1344);
  for (int64_t g = g0; g < g1; ++g) {
    const int64_t j0 = g * kGroupRows;
    const int64_t rows = std::min<int64_t>(kGroupRows, n - j0);
    for (int64_t i = i0; i < i1; ++i) {
      q23_group_row<Ops, kThree>(w + (g - g0) * group_bytes, nb,
                                 reinterpret_cast<const BlockQ8_K*>(a + i * a_stride), rows,
                                 bias ? bias + j0 : nullptr, y + i * ldy + j0);
    }
  }
}

// gemm_for with Q2_K and Q3_K.
template <class Ops>
GemmFn gemm_with_q23_for(DType type) {
  if (type == DType::Q2_K) return &q23_gemm<Ops, false>;
  if (type == DType::Q3_K) return &q23_gemm<Ops, true>;
  return gemm_for<Ops>(type);
}

}  // namespace af::cpu::quant::kpacked::simd
