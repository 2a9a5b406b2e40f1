#pragma once
// The 256-bit Q2_K / Q3_K prefill kernels over the K-quant packed layout of kpacked.hpp, over Ops
// (AVX2 or AVX-VNNI). Include only from *_avx2.cpp / *_avxvnni.cpp.
//
// The AVX-512 panel kernel (kpacked_q23_prefill_avx512vnni.cpp) with 8 lanes: one group (16
// rows, two halves of 8: bytes [0, 32) and [32, 64) of every packed chunk) is unpacked one
// super-block at a time into unsigned quants and per-row scales, and every activation row of
// the call then passes over it, a broadcast 4-byte group of activations against 4 quants of
// each row. Before, these CPUs copied each tile back to GGUF rows for the generic 16-element
// tile kernels. Ops supplies the integer steps:
//   int32_t start(v): the broadcast start of a sub-block sum that begins at v (Q3_K: -4 times
//     its activation sum, the quants being u - 4)
//   __m256i scale(s): the sub-block scale (an int16 in the low half of each lane, zero above)
//     in the form madd takes
//   __m256i dot(sub, w, a): sub + the 4-byte group sums of the unsigned w times the int8 a
//   __m256i madd(acc, x, s): acc + the int16 pairs of x times those of s, summed per lane
// Sub-block sums fit an int16 (Q2_K: 16 x 3 x 128; Q3_K: 16 x 4 x 128; AVX2's int16 halves hold
// at most the start plus 8 products, 8192 + 8 x 7 x 128), so every step is exact, and the
// float steps are quant::ref::dot's in its order: the outputs are its bits.
#include "backend/cpu/quant/kpacked_q23_simd256.hpp"

namespace af::cpu::quant::kpacked::simd {

// One super-block of a group, unpacked. Lane c of [..][h] is row 8 h + c of the group.
struct Q23Block256 {
  __m256i values[kQKK / 4][2];  // 4 unsigned quants of elements 4 g .. 4 g + 3 (0..3 or 0..7)
  __m256i scale[16][2];         // sub-block j's scale, as Ops::scale
  __m256i mins[8][2];           // Q2_K: the mins of sub-blocks 2 t and 2 t + 1 as int16 pairs
  __m256 d[2], dmin[2];         // dmin: Q2_K only
};

// Byte `i` (a constant) of each lane of v, as an int32.
inline __m256i byte_of(__m256i v, int i) {
  return _mm256_and_si256(_mm256_srli_epi32(v, 8 * i), _mm256_set1_epi32(0xff));
}

// The quants of half h of packed super-block pb: qs chunk 8 n + c, bits 2 s are elements
// 128 n + 32 s + 4 c + i (group 32 n + 8 s + c); Q3_K's hmask chunk c has their third bit at
// bit 4 n + s.
template <bool kThree>
inline void unpack_values256(const uint8_t* pb, int h, Q23Block256& out) {
  constexpr int kQs = kThree ? 224 : 320;
  const int off = 32 * h;
#pragma GCC unroll 2
  for (int n = 0; n < 2; ++n) {
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
      const __m256i q = load(pb + kQs + 64 * (8 * n + c) + off);
      [[maybe_unused]] __m256i hm;
      if constexpr (kThree) hm = load(pb + 1248 + 64 * c + off);
#pragma GCC unroll 4
      for (int s = 0; s < 4; ++s) {
        __m256i u = two_bits(q, s);
        if constexpr (kThree) u = _mm256_or_si256(u, third_bit(hm, 4 * n + s));
        out.values[32 * n + 8 * s + c][h] = u;
      }
    }
  }
}

// The scales (and Q2_K's mins, d and dmin) of half h of packed super-block pb.
template <class Ops, bool kThree>
inline void unpack_scales256(const uint8_t* pb, int h, Q23Block256& out) {
  const int off = 32 * h;
  out.d[h] = halves(pb + 16 * h);
  if constexpr (kThree) {
    __m256i s[4];  // byte i of s[q]: scale 4 q + i plus 32
    q3_k_scales(pb, h, s);
    for (int j = 0; j < 16; ++j) {
      // An int16 subtraction: the high half of each lane stays zero.
      out.scale[j][h] =
          Ops::scale(_mm256_sub_epi16(byte_of(s[j / 4], j % 4), _mm256_set1_epi32(32)));
    }
    out.dmin[h] = _mm256_setzero_ps();
  } else {
    const __m256i nib = _mm256_set1_epi32(0x0f);
    for (int w = 0; w < 4; ++w) {
      const __m256i word = load(pb + 64 + 64 * w + off);  // scale bytes 4 w .. 4 w + 3
      for (int i = 0; i < 4; ++i) {
        out.scale[4 * w + i][h] = Ops::scale(_mm256_and_si256(_mm256_srli_epi32(word, 8 * i), nib));
      }
      // Pairs (4 w, 4 w + 1) and (4 w + 2, 4 w + 3): the high nibbles of bytes 2 p and 2 p + 1
      // at bits 0-3 and 16-19.
      for (int p = 0; p < 2; ++p) {
        const __m256i x = _mm256_srli_epi32(word, 16 * p);
        out.mins[2 * w + p][h] =
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(x, 4), nib),
                            _mm256_and_si256(_mm256_slli_epi32(x, 4), _mm256_set1_epi32(0xf0000)));
      }
    }
    out.dmin[h] = halves(pb + 32 + 16 * h);
  }
}

// Adds super-block b of R activation rows times the unpacked group block to y (rows ldy apart,
// only the lanes in mask[h] written); first: y is not read but starts from zero.
template <class Ops, bool kThree, int R>
void rows256(const Q23Block256& pb, const uint8_t* a, int64_t a_stride, int64_t b, bool first,
             const __m256i mask[2], float* y, int64_t ldy) {
  const BlockQ8_K* act[R];
  for (int r = 0; r < R; ++r) act[r] = reinterpret_cast<const BlockQ8_K*>(a + r * a_stride) + b;
  __m256i total[R][2];
  for (int r = 0; r < R; ++r) total[r][0] = total[r][1] = _mm256_setzero_si256();
    // The unroll pragmas keep sub and total in registers (GCC 12 leaves these loops rolled).
#pragma GCC unroll 2
  for (int j = 0; j < 16; ++j) {
    __m256i sub[R][2];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      sub[r][0] = sub[r][1] = _mm256_set1_epi32(kThree ? Ops::start(-4 * act[r]->bsums[j]) : 0);
    }
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) {
      const int g = 4 * j + u;
      const __m256i w0 = pb.values[g][0];
      const __m256i w1 = pb.values[g][1];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m256i av = bcast4(act[r]->qs + 4 * g);
        sub[r][0] = Ops::dot(sub[r][0], w0, av);
        sub[r][1] = Ops::dot(sub[r][1], w1, av);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      total[r][0] = Ops::madd(total[r][0], sub[r][0], pb.scale[j][0]);
      total[r][1] = Ops::madd(total[r][1], sub[r][1], pb.scale[j][1]);
    }
  }
  [[maybe_unused]] __m256i summ[R][2];
  if constexpr (!kThree) {
    for (int r = 0; r < R; ++r) summ[r][0] = summ[r][1] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int t = 0; t < 8; ++t) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m256i bs = bcast_pair(act[r]->bsums[2 * t], act[r]->bsums[2 * t + 1]);
        summ[r][0] = Ops::madd(summ[r][0], pb.mins[t][0], bs);
        summ[r][1] = Ops::madd(summ[r][1], pb.mins[t][1], bs);
      }
    }
  }
  for (int h = 0; h < 2; ++h) {
    for (int r = 0; r < R; ++r) {
      float* out = y + r * ldy + 8 * h;
      const __m256 da = _mm256_set1_ps(act[r]->d);
      __m256 acc = first ? _mm256_setzero_ps() : _mm256_maskload_ps(out, mask[h]);
      acc = _mm256_fmadd_ps(_mm256_mul_ps(pb.d[h], da), _mm256_cvtepi32_ps(total[r][h]), acc);
      if constexpr (!kThree) {
        // fnmadd: -(x * y) + acc, the same single rounding as fma(-x, y, acc).
        acc = _mm256_fnmadd_ps(_mm256_mul_ps(pb.dmin[h], da), _mm256_cvtepi32_ps(summ[r][h]), acc);
      }
      _mm256_maskstore_ps(out, mask[h], acc);
    }
  }
}

// Activation rows per rows256 step: 3 x 2 sub-block sums, 3 x 2 totals, the two weight
// vectors and a broadcast fill 15 of the 16 registers (2 and 4 rows measured within 5%).
inline constexpr int kRows256 = 3;

template <class Ops, bool kThree>
void q23_prefill_gemm(const uint8_t* w, int64_t g0, int64_t g1, int64_t n, int64_t k,
                      const uint8_t* a, int64_t a_stride, int64_t i0, int64_t i1, const float* bias,
                      float* y, int64_t ldy) {
  constexpr int64_t kBytes = kThree ? 1760 : 1344;
  const int64_t nb = k / kQKK;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  Q23Block256 pb;
  for (int64_t g = g0; g < g1; ++g) {
    const int64_t j0 = g * kGroupRows;
    const int rows = static_cast<int>(std::min<int64_t>(kGroupRows, n - j0));
    // maskload / maskstore take the lanes whose sign bit is set: lane c < rows - 8 h.
    const __m256i mask[2] = {_mm256_cmpgt_epi32(_mm256_set1_epi32(rows), lane),
                             _mm256_cmpgt_epi32(_mm256_set1_epi32(rows - 8), lane)};
    const uint8_t* pg = w + (g - g0) * nb * kBytes;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = pg + b * kBytes;
      for (int h = 0; h < 2; ++h) {
        unpack_values256<kThree>(blk, h, pb);
        unpack_scales256<Ops, kThree>(blk, h, pb);
      }
      // The next block (this group's, or the next group's first: the groups are contiguous)
      // into L2 while the rows pass over this one.
      if (b + 1 < nb || g + 1 < g1) {
        for (int64_t o = 0; o < kBytes; o += 64) {
          _mm_prefetch(reinterpret_cast<const char*>(blk + kBytes + o), _MM_HINT_T1);
        }
      }
      int64_t i = i0;
      for (; i + kRows256 <= i1; i += kRows256) {
        rows256<Ops, kThree, kRows256>(pb, a + i * a_stride, a_stride, b, b == 0, mask,
                                       y + i * ldy + j0, ldy);
      }
      for (; i < i1; ++i) {
        rows256<Ops, kThree, 1>(pb, a + i * a_stride, a_stride, b, b == 0, mask, y + i * ldy + j0,
                                ldy);
      }
    }
    if (bias) {
      for (int h = 0; h < 2; ++h) {
        const __m256 bv = _mm256_maskload_ps(bias + j0 + 8 * h, mask[h]);
        for (int64_t i = i0; i < i1; ++i) {
          float* out = y + i * ldy + j0 + 8 * h;
          _mm256_maskstore_ps(out, mask[h], _mm256_add_ps(_mm256_maskload_ps(out, mask[h]), bv));
        }
      }
    }
  }
}

// The Q2_K / Q3_K prefill kernels; null for the other types (their prefill unpacks tiles for
// the GGUF-row kernels).
template <class Ops>
GemmFn q23_prefill_for(DType type) {
  if (type == DType::Q2_K) return &q23_prefill_gemm<Ops, false>;
  if (type == DType::Q3_K) return &q23_prefill_gemm<Ops, true>;
  return nullptr;
}

}  // namespace af::cpu::quant::kpacked::simd
