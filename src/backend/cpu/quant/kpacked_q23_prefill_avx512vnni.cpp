// Prefill (many activation rows) AVX-512 VNNI matmul for Q2_K and Q3_K over the K-quant packed
// layout (kpacked.hpp).
//
// As the Q4_K..Q6_K panel kernel (kpacked_prefill_avx512vnni.cpp), a panel of two groups (32
// weight rows, lane c of a vector = row c) is unpacked one super-block at a time with plain
// loads, shifts and masks, and every activation row of the call then passes over it with
// vpdpbusd against a broadcast 4-byte group of its activations. Before, these types copied each
// tile back to GGUF rows and ran the generic 16-element tile kernels (about 3/4 of a Q2_K pp128
// in perf, at 0.48x llama.cpp).
//
// What differs from the 4- to 6-bit panels: the 16 sub-blocks of 16 elements have sums that fit
// an int16 (Q2_K: 16 x 3 x 128; Q3_K: 16 x 4 x 128 with its -4 offset, which starts each sum at
// -4 times the activation block sum), so one vpdpwssd against the scale (an int16 in the low
// half of each lane, zero above) multiplies and adds a sub-block sum into the super-block sum
// exactly, as the decode kernels do (kpacked_q23_avx512vnni.cpp), instead of a vpmulld (10
// cycles, two uops) and an add. The float steps are those of quant::ref::dot: per super-block
// acc = fma(d * da, sumi, acc), then for Q2_K acc = fma(-(dmin * da), summ, acc), super-blocks
// in order, with the output itself as the accumulator, so results keep the reference's bits.
// GCC 12.2's avx512fintrin.h self-initialises the _mm512_undefined_* placeholders (GCC PR 105593),
// which -Wuninitialized reports wherever they are inlined; those values are never read.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "af/core/error.hpp"
#include "backend/cpu/quant/blocks.hpp"
#include "backend/cpu/quant/kpacked.hpp"

namespace af::cpu::quant::kpacked {
namespace {

using af::quant::BlockQ8_K;
using af::quant::kQKK;

constexpr int kGroups = kQKK / 4;  // 4-byte groups of a super-block
constexpr int kSubBlocks = 16;     // sub-blocks of 16 elements (4 groups) each
constexpr int kPairs = 8;          // int16 pairs of the 16 Q8_K block sums

// One super-block of a 32-row panel, unpacked. Lane c of [..][h] is weight row 16 h + c.
struct Q23Block {
  __m512i values[kGroups][2];    // 4 unsigned quants of elements 4 g .. 4 g + 3 (0..3 or 0..7)
  __m512i scale[kSubBlocks][2];  // the scale of sub-block j, an int16 in the low half
  __m512i mins[kPairs][2];       // Q2_K: the mins of sub-blocks 2 t and 2 t + 1 as int16 pairs
  __m512 d[2], dmin[2];          // dmin: Q2_K only
};

inline __m512i load(const uint8_t* p) { return _mm512_loadu_si512(p); }

inline __m512 halves(const uint8_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

inline __m512i bcast4(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// Byte `i` (a constant) of each lane of v, as an int32.
inline __m512i byte_of(__m512i v, int i) {
  return _mm512_and_si512(_mm512_srli_epi32(v, 8 * i), _mm512_set1_epi32(0xff));
}

enum class Kind { kQ2_K, kQ3_K };

template <Kind kKind>
constexpr int64_t kBlockBytes = kKind == Kind::kQ2_K ? 1344 : 1760;
// Where a packed super-block's qs chunks start (Q3_K's 8 hmask chunks follow them at 1248).
template <Kind kKind>
constexpr int kQsOffset = kKind == Kind::kQ2_K ? 320 : 224;
constexpr int kHmaskOffset = 1248;

// The quants of packed super-block pb into half h: qs chunk 8 n + c holds bytes 32 n + 4 c .. + 3
// of each row, whose bits 2 s are elements 128 n + 32 s + 4 c + i (group 32 n + 8 s + c); Q3_K's
// hmask chunk c has their third bit at bit 4 n + s.
template <Kind kKind>
void unpack_values(const uint8_t* pb, int h, Q23Block& out) {
  const __m512i m3 = _mm512_set1_epi8(3);
  const __m512i bit3 = _mm512_set1_epi8(4);
  for (int n = 0; n < 2; ++n) {
    for (int c = 0; c < 8; ++c) {
      const __m512i q = load(pb + kQsOffset<kKind> + 64 * (8 * n + c));
      [[maybe_unused]] __m512i hm;
      if constexpr (kKind == Kind::kQ3_K) hm = load(pb + kHmaskOffset + 64 * c);
      for (int s = 0; s < 4; ++s) {
        __m512i u = _mm512_and_si512(_mm512_srli_epi16(q, 2 * s), m3);
        if constexpr (kKind == Kind::kQ3_K) {
          // Bit 4 n + s of every hmask byte moved to bit 2 (0xf8: a | (b & c)).
          const int bit = 4 * n + s;
          const __m512i moved =
              bit < 2 ? _mm512_slli_epi16(hm, 2 - bit) : _mm512_srli_epi16(hm, bit - 2);
          u = _mm512_ternarylogic_epi32(u, moved, bit3, 0xf8);
        }
        out.values[32 * n + 8 * s + c][h] = u;
      }
    }
  }
}

// Q2_K scale byte j (word j / 4, byte j % 4): scale in the low nibble, min in the high one.
void unpack_q2_k_scales(const uint8_t* pb, int h, Q23Block& out) {
  const __m512i nib = _mm512_set1_epi32(0x0f);
  for (int w = 0; w < 4; ++w) {
    const __m512i word = load(pb + 64 + 64 * w);
    for (int i = 0; i < 4; ++i) {
      out.scale[4 * w + i][h] = _mm512_and_si512(_mm512_srli_epi32(word, 8 * i), nib);
    }
    // Pairs (4 w, 4 w + 1) and (4 w + 2, 4 w + 3): the high nibbles of bytes 2 p and 2 p + 1
    // at bits 0-3 and 16-19.
    for (int p = 0; p < 2; ++p) {
      const __m512i x = _mm512_srli_epi32(word, 16 * p);
      out.mins[2 * w + p][h] =
          _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(x, 4), nib),
                          _mm512_and_si512(_mm512_slli_epi32(x, 4), _mm512_set1_epi32(0xf0000)));
    }
  }
  out.d[h] = halves(pb);
  out.dmin[h] = halves(pb + 32);
}

// Q3_K's 16 six-bit scales from its 3 words (as q3k_scale): low nibbles from words 0 and 1,
// two high bits each from word 2, bits 2 (j / 4) of byte j % 4. The "- 32" is an int16
// subtraction, so the high half of each lane stays zero for vpdpwssd.
void unpack_q3_k_scales(const uint8_t* pb, int h, Q23Block& out) {
  const __m512i w0 = load(pb + 32), w1 = load(pb + 96), w2 = load(pb + 160);
  const __m512i m0f = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
  // Byte i of s[q]: scale 4 q + i plus 32 (0xf8: a | (b & c)).
  const __m512i s[4] = {
      _mm512_ternarylogic_epi32(_mm512_and_si512(w0, m0f), _mm512_slli_epi32(w2, 4), m30, 0xf8),
      _mm512_ternarylogic_epi32(_mm512_and_si512(w1, m0f), _mm512_slli_epi32(w2, 2), m30, 0xf8),
      _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi32(w0, 4), m0f), w2, m30, 0xf8),
      _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi32(w1, 4), m0f),
                                _mm512_srli_epi32(w2, 2), m30, 0xf8)};
  for (int j = 0; j < kSubBlocks; ++j) {
    out.scale[j][h] = _mm512_sub_epi16(byte_of(s[j / 4], j % 4), _mm512_set1_epi32(32));
  }
  out.d[h] = halves(pb);
  out.dmin[h] = _mm512_setzero_ps();
}

template <Kind kKind>
void unpack(const uint8_t* pb, int h, Q23Block& out) {
  unpack_values<kKind>(pb, h, out);
  if constexpr (kKind == Kind::kQ2_K) {
    unpack_q2_k_scales(pb, h, out);
  } else {
    unpack_q3_k_scales(pb, h, out);
  }
}

// Half h of a panel whose second group is missing: zeros (its lanes are never stored, but
// their sums must not read uninitialised memory).
void clear_half(int h, Q23Block& out) {
  for (auto& v : out.values) v[h] = _mm512_setzero_si512();
  for (auto& v : out.scale) v[h] = _mm512_setzero_si512();
  for (auto& v : out.mins) v[h] = _mm512_setzero_si512();
  out.d[h] = out.dmin[h] = _mm512_setzero_ps();
}

// Adds super-block b of R activation rows times the unpacked panel block to y (rows ldy apart,
// lanes outside mask[h] untouched); first: y is not read but starts from zero.
template <Kind kKind, int R>
void panel_rows(const Q23Block& pb, const uint8_t* a, int64_t a_stride, int64_t b, bool first,
                const __mmask16 mask[2], float* y, int64_t ldy) {
  const BlockQ8_K* act[R];
  for (int r = 0; r < R; ++r) act[r] = reinterpret_cast<const BlockQ8_K*>(a + r * a_stride) + b;
  // Q3_K: -4 times each block sum (its sub-blocks are the Q8_K sums' blocks), stored once to
  // be broadcast from memory.
  [[maybe_unused]] alignas(64) int32_t start[kKind == Kind::kQ3_K ? R : 1][16];
  if constexpr (kKind == Kind::kQ3_K) {
    for (int r = 0; r < R; ++r) {
      const __m512i bs = _mm512_cvtepi16_epi32(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(act[r]->bsums)));
      _mm512_store_si512(start[r],
                         _mm512_slli_epi32(_mm512_sub_epi32(_mm512_setzero_si512(), bs), 2));
    }
  }
  __m512i total[R][2];
  for (int r = 0; r < R; ++r) total[r][0] = total[r][1] = _mm512_setzero_si512();
    // The unroll pragmas keep sub and total in registers: GCC 12 left these loops rolled, with
    // the sums on the stack (measured 2.6x slower, 1536 x 1536 at m = 128).
#pragma GCC unroll 2
  for (int j = 0; j < kSubBlocks; ++j) {
    __m512i sub[R][2];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      if constexpr (kKind == Kind::kQ3_K) {
        sub[r][0] = sub[r][1] = _mm512_set1_epi32(start[r][j]);
      } else {
        sub[r][0] = sub[r][1] = _mm512_setzero_si512();
      }
    }
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) {
      const int g = 4 * j + u;
      const __m512i w0 = pb.values[g][0];
      const __m512i w1 = pb.values[g][1];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m512i av = bcast4(act[r]->qs + 4 * g);
        sub[r][0] = _mm512_dpbusd_epi32(sub[r][0], w0, av);
        sub[r][1] = _mm512_dpbusd_epi32(sub[r][1], w1, av);
      }
    }
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        total[r][h] = _mm512_dpwssd_epi32(total[r][h], sub[r][h], pb.scale[j][h]);
      }
    }
  }
  [[maybe_unused]] __m512i summ[R][2];
  if constexpr (kKind == Kind::kQ2_K) {
    for (int r = 0; r < R; ++r) summ[r][0] = summ[r][1] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int t = 0; t < kPairs; ++t) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m512i bs = bcast4(act[r]->bsums + 2 * t);
        summ[r][0] = _mm512_dpwssd_epi32(summ[r][0], pb.mins[t][0], bs);
        summ[r][1] = _mm512_dpwssd_epi32(summ[r][1], pb.mins[t][1], bs);
      }
    }
  }
  for (int h = 0; h < 2; ++h) {
    for (int r = 0; r < R; ++r) {
      float* out = y + r * ldy + 16 * h;
      const __m512 da = _mm512_set1_ps(act[r]->d);
      __m512 acc = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask[h], out);
      acc = _mm512_fmadd_ps(_mm512_mul_ps(pb.d[h], da), _mm512_cvtepi32_ps(total[r][h]), acc);
      if constexpr (kKind == Kind::kQ2_K) {
        // fnmadd: -(x * y) + acc, the same single rounding as fma(-x, y, acc).
        acc = _mm512_fnmadd_ps(_mm512_mul_ps(pb.dmin[h], da), _mm512_cvtepi32_ps(summ[r][h]), acc);
      }
      _mm512_mask_storeu_ps(out, mask[h], acc);
    }
  }
}

// Activation rows per panel_rows step: 4 x 2 sub-block sums, 4 x 2 totals and the two weight
// vectors fit the 32 registers (3 and 6 rows, and 1 or 4 sub-blocks per unrolled step, measured
// within the noise of a loaded machine).
constexpr int kActRows = 4;

// Activation rows [i0, i1) times one super-block of the unpacked panel.
template <Kind kKind>
void rows_over_block(const Q23Block& pb, const uint8_t* a, int64_t a_stride, int64_t i0, int64_t i1,
                     int64_t b, const __mmask16 mask[2], float* y, int64_t ldy) {
  const bool first = b == 0;
  int64_t i = i0;
  for (; i + kActRows <= i1; i += kActRows) {
    panel_rows<kKind, kActRows>(pb, a + i * a_stride, a_stride, b, first, mask, y + i * ldy, ldy);
  }
  for (; i + 2 <= i1; i += 2) {
    panel_rows<kKind, 2>(pb, a + i * a_stride, a_stride, b, first, mask, y + i * ldy, ldy);
  }
  if (i < i1)
    panel_rows<kKind, 1>(pb, a + i * a_stride, a_stride, b, first, mask, y + i * ldy, ldy);
}

// Both groups' blocks at p and p + group_stride into L2 (the next panel block).
template <int64_t kBytes>
void prefetch_blocks(const uint8_t* p, int64_t group_stride) {
  for (int64_t off = 0; off < kBytes; off += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(p + off), _MM_HINT_T1);
    _mm_prefetch(reinterpret_cast<const char*>(p + group_stride + off), _MM_HINT_T1);
  }
}

void add_bias(const float* bias, int64_t j0, const __mmask16 mask[2], int64_t i0, int64_t i1,
              float* y, int64_t ldy) {
  for (int h = 0; h < 2; ++h) {
    const __m512 bv = _mm512_maskz_loadu_ps(mask[h], bias + j0 + 16 * h);
    for (int64_t i = i0; i < i1; ++i) {
      float* out = y + i * ldy + j0 + 16 * h;
      _mm512_mask_storeu_ps(out, mask[h], _mm512_add_ps(_mm512_maskz_loadu_ps(mask[h], out), bv));
    }
  }
}

template <Kind kKind>
void prefill_gemm(const uint8_t* w, int64_t g0, int64_t g1, int64_t n, int64_t k, const uint8_t* a,
                  int64_t a_stride, int64_t i0, int64_t i1, const float* bias, float* y,
                  int64_t ldy) {
  constexpr int64_t kBytes = kBlockBytes<kKind>;
  const int64_t nb = k / kQKK;
  const int64_t group_bytes = nb * kBytes;
  Q23Block pb;
  for (int64_t g = g0; g < g1; g += 2) {
    const bool pair = g + 1 < g1;
    const int64_t j0 = g * kGroupRows;
    const int rows = static_cast<int>(std::min<int64_t>(pair ? 32 : 16, n - j0));
    const __mmask16 mask[2] = {static_cast<__mmask16>(rows >= 16 ? 0xFFFF : (1u << rows) - 1),
                               static_cast<__mmask16>(rows >= 32  ? 0xFFFF
                                                      : rows > 16 ? (1u << (rows - 16)) - 1
                                                                  : 0)};
    const uint8_t* pg = w + (g - g0) * group_bytes;
    if (!pair) clear_half(1, pb);
    for (int64_t b = 0; b < nb; ++b) {
      unpack<kKind>(pg + b * kBytes, 0, pb);
      if (pair) unpack<kKind>(pg + group_bytes + b * kBytes, 1, pb);
      // The next blocks (this panel's, or the next panel's first) into the cache while the rows
      // pass over this one: between two blocks of a stream the hardware prefetchers fall behind.
      const uint8_t* next = b + 1 < nb ? pg + (b + 1) * kBytes : pg + 2 * group_bytes;
      if (b + 1 < nb || g + 2 < g1) prefetch_blocks<kBytes>(next, group_bytes);
      rows_over_block<kKind>(pb, a, a_stride, i0, i1, b, mask, y + j0, ldy);
    }
    if (bias) add_bias(bias, j0, mask, i0, i1, y, ldy);
  }
}

}  // namespace

GemmFn avx512vnni_prefill_gemm_q23(DType type) {
  switch (type) {
    case DType::Q2_K:
      return &prefill_gemm<Kind::kQ2_K>;
    case DType::Q3_K:
      return &prefill_gemm<Kind::kQ3_K>;
    default:
      fail(ErrorCode::kUnsupported, "cpu", "K-quant packed weights: type ", name(type),
           " has no Q2_K / Q3_K prefill kernel");
  }
}

}  // namespace af::cpu::quant::kpacked
