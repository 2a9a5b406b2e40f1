// AVX-512 VNNI matmul kernels on the packed layout of packed.hpp. A tile is MR activation rows
// x NG row groups: each weight chunk is loaded and unpacked once per block and multiplied
// against all MR rows with vpdpbusd (unsigned weight bytes x signed broadcast activation bytes).
// GCC 12.2's avx512fintrin.h self-initialises the _mm512_undefined_* placeholders (GCC PR 105593),
// which -Wuninitialized reports wherever they are inlined; those values are never read.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "af/core/error.hpp"
#include "backend/cpu/quant/packed.hpp"

namespace af::cpu::quant::packed {
namespace {

// Byte offsets inside a packed group block (see packed.hpp); -1 where the type has no such part.
// Src*: offsets inside a GGUF block of SrcBytes bytes.
template <int Bytes, int MinOff, int QsOff, int MaskOff, bool Nibbles, int SrcBytes, int SrcQh,
          int SrcQs>
struct Format {
  static constexpr int kSrcBytes = SrcBytes;
  static constexpr int kSrcQh = SrcQh;
  static constexpr int kSrcQs = SrcQs;
  static constexpr int kBytes = Bytes;
  static constexpr int kMinOff = MinOff;
  static constexpr int kQsOff = QsOff;
  static constexpr int kMaskOff = MaskOff;
  static constexpr bool kNibbles = Nibbles;
  static constexpr bool kHasMin = MinOff >= 0;
  static constexpr bool kFifthBit = MaskOff >= 0;
};
using FormatQ4_0 = Format<288, -1, 32, -1, true, 18, -1, 2>;
using FormatQ4_1 = Format<320, 32, 64, -1, true, 20, -1, 4>;
using FormatQ5_0 = Format<352, -1, 32, 288, true, 22, 2, 6>;
using FormatQ5_1 = Format<384, 32, 64, 320, true, 24, 4, 8>;
using FormatQ8_0 = Format<544, -1, 32, -1, false, 34, -1, 2>;

inline __m512i broadcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

inline __mmask64 load_mask(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return static_cast<__mmask64>(v);
}

// The unsigned weight bytes of chunk c (elements 4c..4c+3 of the 16 rows) of a nibble format:
// low nibbles for c < 4, high nibbles of the same bytes for c >= 4.
template <class F>
inline void unpack_nibble_pair(const uint8_t* block, int c, __m512i& lo, __m512i& hi) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i raw = _mm512_loadu_si512(block + F::kQsOff + 64 * c);
  lo = _mm512_and_si512(raw, low4);
  hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low4);
  if constexpr (F::kFifthBit) {
    const __m512i sixteen = _mm512_set1_epi8(16);
    lo = _mm512_mask_add_epi8(lo, load_mask(block + F::kMaskOff + 8 * c), lo, sixteen);
    hi = _mm512_mask_add_epi8(hi, load_mask(block + F::kMaskOff + 8 * (c + 4)), hi, sixteen);
  }
}

constexpr int kPrefetchBlocks = 4;

// One MR x NG tile over all nb blocks: rows i0..i0+MR of `a`, groups w_groups[0..NG).
template <class F, int MR, int NG>
void tile(const uint8_t* w, int64_t group_stride, int64_t nb, const Activations& a, int64_t i0,
          const float* bias, float* y, int64_t ldy, int64_t j0, int64_t n) {
  __m512 acc[MR][NG];
  [[maybe_unused]] __m512 accm[MR][NG];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 8
    for (int g = 0; g < NG; ++g) {
      acc[r][g] = _mm512_setzero_ps();
      if constexpr (F::kHasMin) accm[r][g] = _mm512_setzero_ps();
    }
  }
  const int8_t* aq[MR];
  const float* ad[MR];
  const int32_t* aoff[MR];
  [[maybe_unused]] const float* asum[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    aq[r] = a.qs + (i0 + r) * a.k;
    ad[r] = a.d + (i0 + r) * nb;
    aoff[r] = a.offset + (i0 + r) * nb;
    asum[r] = a.asum + (i0 + r) * nb;
  }
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* wb[NG];
#pragma GCC unroll 8
    for (int g = 0; g < NG; ++g) wb[g] = w + g * group_stride + b * F::kBytes;
    if constexpr (MR == 1 && F::kFifthBit) {
      // A decode row streams each group once. With the fifth bits to merge, the hardware
      // prefetchers fall behind (1 thread: 16-19 GB/s against Q4_0's 21-25); asking for the
      // lines a few blocks ahead gives 24-28. The other types are faster without it at 2
      // threads, where memory is the limit.
#pragma GCC unroll 8
      for (int g = 0; g < NG; ++g) {
        for (int off = 0; off < F::kBytes; off += 64) {
          _mm_prefetch(reinterpret_cast<const char*>(wb[g] + kPrefetchBlocks * F::kBytes + off),
                       _MM_HINT_T0);
        }
      }
    }
    __m512i isum[MR][NG];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512i start = F::kHasMin ? _mm512_setzero_si512() : _mm512_set1_epi32(aoff[r][b]);
#pragma GCC unroll 8
      for (int g = 0; g < NG; ++g) isum[r][g] = start;
    }
    if constexpr (F::kNibbles) {
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) {
        __m512i lo[NG], hi[NG];
#pragma GCC unroll 8
        for (int g = 0; g < NG; ++g) unpack_nibble_pair<F>(wb[g], c, lo[g], hi[g]);
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
          const __m512i alo = broadcast4(aq[r] + b * 32 + 4 * c);
          const __m512i ahi = broadcast4(aq[r] + b * 32 + 16 + 4 * c);
#pragma GCC unroll 8
          for (int g = 0; g < NG; ++g) {
            isum[r][g] = _mm512_dpbusd_epi32(isum[r][g], lo[g], alo);
            isum[r][g] = _mm512_dpbusd_epi32(isum[r][g], hi[g], ahi);
          }
        }
      }
    } else {
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) {
        __m512i q[NG];
#pragma GCC unroll 8
        for (int g = 0; g < NG; ++g) q[g] = _mm512_loadu_si512(wb[g] + F::kQsOff + 64 * c);
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
          const __m512i av = broadcast4(aq[r] + b * 32 + 4 * c);
#pragma GCC unroll 8
          for (int g = 0; g < NG; ++g) isum[r][g] = _mm512_dpbusd_epi32(isum[r][g], q[g], av);
        }
      }
    }
    __m512 dw[NG];
    [[maybe_unused]] __m512 mw[NG];
#pragma GCC unroll 8
    for (int g = 0; g < NG; ++g) {
      dw[g] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb[g])));
      if constexpr (F::kHasMin) {
        mw[g] = _mm512_cvtph_ps(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb[g] + F::kMinOff)));
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512 da = _mm512_set1_ps(ad[r][b]);
#pragma GCC unroll 8
      for (int g = 0; g < NG; ++g) {
        acc[r][g] =
            _mm512_fmadd_ps(_mm512_mul_ps(dw[g], da), _mm512_cvtepi32_ps(isum[r][g]), acc[r][g]);
        if constexpr (F::kHasMin) {
          accm[r][g] =
              _mm512_fmadd_ps(_mm512_mul_ps(mw[g], da), _mm512_set1_ps(asum[r][b]), accm[r][g]);
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int g = 0; g < NG; ++g) {
    const int64_t j = j0 + g * kGroupRows;
    const int64_t valid = std::min<int64_t>(kGroupRows, n - j);
    const __mmask16 keep = static_cast<__mmask16>((1u << valid) - 1u);
    const __m512 bv = bias ? _mm512_maskz_loadu_ps(keep, bias + j) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      __m512 v = acc[r][g];
      if constexpr (F::kHasMin) v = _mm512_add_ps(v, accm[r][g]);
      if (bias) v = _mm512_add_ps(v, bv);
      _mm512_mask_storeu_ps(y + (i0 + r) * ldy + j, keep, v);
    }
  }
}

// Register budget (32 zmm): MR * NG int sums + MR * NG float accumulators (twice for a min) +
// 2 * NG unpacked weights.
template <class F>
struct Tiling {
  static constexpr int kMR = F::kHasMin ? 4 : 4;
  static constexpr int kNG = F::kHasMin ? 2 : 3;
};

using TileFn = void (*)(const uint8_t*, int64_t, int64_t, const Activations&, int64_t, const float*,
                        float*, int64_t, int64_t, int64_t);

template <class F, size_t... I>
constexpr auto make_tiles(std::index_sequence<I...>) {
  constexpr int kNG = Tiling<F>::kNG;
  return std::array<TileFn, sizeof...(I)>{
      &tile<F, static_cast<int>(I) / kNG + 1, static_cast<int>(I) % kNG + 1>...};
}

template <class F>
void gemm(const uint8_t* w, int64_t g0, int64_t g1, int64_t n, const Activations& a, int64_t i0,
          int64_t i1, const float* bias, float* y, int64_t ldy) {
  constexpr int kMR = Tiling<F>::kMR;
  constexpr int kNG = Tiling<F>::kNG;
  static constexpr auto kTiles = make_tiles<F>(std::make_index_sequence<kMR * kNG>());
  const int64_t nb = a.k / 32;
  const int64_t group_stride = nb * F::kBytes;
  if (i1 - i0 == 1) {
    // A decode row leaves registers for 4 groups: one tile covers a decode task's 64 rows.
    constexpr int kRowNG = 4;
    static constexpr std::array<TileFn, kRowNG> kRowTiles = {&tile<F, 1, 1>, &tile<F, 1, 2>,
                                                             &tile<F, 1, 3>, &tile<F, 1, 4>};
    for (int64_t g = g0; g < g1; g += kRowNG) {
      const int64_t ng = std::min<int64_t>(kRowNG, g1 - g);
      kRowTiles[static_cast<size_t>(ng - 1)](w + (g - g0) * group_stride, group_stride, nb, a, i0,
                                             bias, y, ldy, g * kGroupRows, n);
    }
    return;
  }
  for (int64_t g = g0; g < g1; g += kNG) {
    const int64_t ng = std::min<int64_t>(kNG, g1 - g);
    for (int64_t i = i0; i < i1; i += kMR) {
      const int64_t mr = std::min<int64_t>(kMR, i1 - i);
      kTiles[static_cast<size_t>((mr - 1) * kNG + (ng - 1))](
          w + (g - g0) * group_stride, group_stride, nb, a, i, bias, y, ldy, g * kGroupRows, n);
    }
  }
}

// Transposes 16 rows x 4 dwords (row r's 16 bytes at src + r * stride) into 4 chunks
// "16 rows x 4 bytes": out[c] holds dword c of rows 0..15.
inline void transpose_16x4(const uint8_t* src, int64_t stride, __m512i out[4]) {
  __m512i quad[4];  // quad[j]: rows 4j..4j+3, one per 128-bit lane
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const uint8_t* p = src + 4 * j * stride;
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + stride)), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * stride)), 2);
    quad[j] =
        _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 3 * stride)), 3);
  }
  // Rows 0..7 of dwords 0 and 1 (and of dwords 2 and 3) from quads 0 and 1; the same for rows
  // 8..15 from quads 2 and 3.
  const __m512i sel01 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
  const __m512i sel23 =
      _mm512_setr_epi32(2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31);
  const __m512i lo01 = _mm512_permutex2var_epi32(quad[0], sel01, quad[1]);
  const __m512i lo23 = _mm512_permutex2var_epi32(quad[0], sel23, quad[1]);
  const __m512i hi01 = _mm512_permutex2var_epi32(quad[2], sel01, quad[3]);
  const __m512i hi23 = _mm512_permutex2var_epi32(quad[2], sel23, quad[3]);
  out[0] = _mm512_shuffle_i64x2(lo01, hi01, 0x44);
  out[1] = _mm512_shuffle_i64x2(lo01, hi01, 0xEE);
  out[2] = _mm512_shuffle_i64x2(lo23, hi23, 0x44);
  out[3] = _mm512_shuffle_i64x2(lo23, hi23, 0xEE);
}

// pack_groups with in-register transposes (same bytes). Tail groups (fewer than 16 rows) take
// the scalar packer.
template <class F>
void pack(DType type, const uint8_t* w, int64_t n, int64_t k, int64_t g0, int64_t g1,
          uint8_t* dst) {
  const int64_t nb = k / 32;
  const int64_t w_row = nb * F::kSrcBytes;
  for (int64_t g = g0; g < g1; ++g) {
    uint8_t* out = dst + (g - g0) * nb * F::kBytes;
    if (n - g * kGroupRows < kGroupRows) {
      pack_groups(type, w, n, k, g, g + 1, out);
      continue;
    }
    const uint8_t* src = w + g * kGroupRows * w_row;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* base = src + b * F::kSrcBytes;
      uint8_t* pb = out + b * F::kBytes;
      uint16_t d[kGroupRows];
      [[maybe_unused]] uint16_t m[kGroupRows];
      [[maybe_unused]] uint32_t qh[kGroupRows];
#pragma GCC unroll 16
      for (int r = 0; r < kGroupRows; ++r) {
        std::memcpy(&d[r], base + r * w_row, 2);
        if constexpr (F::kHasMin) std::memcpy(&m[r], base + r * w_row + 2, 2);
        if constexpr (F::kFifthBit) std::memcpy(&qh[r], base + r * w_row + F::kSrcQh, 4);
      }
      std::memcpy(pb, d, sizeof(d));
      if constexpr (F::kHasMin) std::memcpy(pb + F::kMinOff, m, sizeof(m));
      __m512i chunks[8];
      transpose_16x4(base + F::kSrcQs, w_row, chunks);
      if constexpr (!F::kNibbles) transpose_16x4(base + F::kSrcQs + 16, w_row, chunks + 4);
      constexpr int kChunks = F::kNibbles ? 4 : 8;
#pragma GCC unroll 8
      for (int c = 0; c < kChunks; ++c) {
        __m512i q = chunks[c];
        if constexpr (!F::kNibbles) q = _mm512_xor_si512(q, _mm512_set1_epi8(-128));
        _mm512_storeu_si512(pb + F::kQsOff + 64 * c, q);
      }
      if constexpr (F::kFifthBit) {
        // Mask c: bits 4c..4c+3 of row r's qh at bits 4r..4r+3.
        const __m512i h = _mm512_loadu_si512(qh);
#pragma GCC unroll 8
        for (int c = 0; c < 8; ++c) {
          const __m512i nib = _mm512_and_si512(_mm512_srli_epi32(h, 4 * c), _mm512_set1_epi32(15));
          const __m128i bytes = _mm512_cvtepi32_epi8(nib);  // row r's nibble in byte r
          const __m128i pairs = _mm_or_si128(bytes, _mm_srli_epi16(bytes, 4));
          const __m128i packed = _mm_cvtepi16_epi8(pairs);  // byte i: rows 2i | 2i+1 << 4
          _mm_storel_epi64(reinterpret_cast<__m128i*>(pb + F::kMaskOff + 8 * c), packed);
        }
      }
    }
  }
}

}  // namespace

namespace {

// round(v) with halves away from zero (std::round), as the reference quantizer rounds.
inline __m512 round_half_away(__m512 v) {
  const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __mmask16 up =
      _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(v, t)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  const __m512 step = _mm512_or_ps(_mm512_and_ps(v, _mm512_set1_ps(-0.0f)), _mm512_set1_ps(1.0f));
  return _mm512_mask_add_ps(t, up, t, step);
}

}  // namespace

void quantize_split_row_avx512(DType type, const float* x, int64_t k, int8_t* qs, float* d,
                               int32_t* offset, float* asum) {
  const int32_t unsigned_offset = weight_offset(type);
  for (int64_t b = 0; b < k / 32; ++b, x += 32) {
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float scale = amax / 127;
    const float inv = scale != 0.f ? 1.0f / scale : 0.0f;
    // The block keeps the fp16 scale, as a GGUF Q8_0 block would.
    d[b] = _cvtsh_ss(_cvtss_sh(scale, _MM_FROUND_TO_NEAREST_INT));
    const __m512 iv = _mm512_set1_ps(inv);
    const __m512i q0 = _mm512_cvttps_epi32(round_half_away(_mm512_mul_ps(v0, iv)));
    const __m512i q1 = _mm512_cvttps_epi32(round_half_away(_mm512_mul_ps(v1, iv)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + 32 * b), _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + 32 * b + 16), _mm512_cvtepi32_epi8(q1));
    const int32_t sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    offset[b] = -unsigned_offset * sum;
    asum[b] = static_cast<float>(sum);
  }
}

PackFn avx512vnni_pack(DType type) {
  switch (type) {
    case DType::Q4_0:
      return &pack<FormatQ4_0>;
    case DType::Q4_1:
      return &pack<FormatQ4_1>;
    case DType::Q5_0:
      return &pack<FormatQ5_0>;
    case DType::Q5_1:
      return &pack<FormatQ5_1>;
    case DType::Q8_0:
      return &pack<FormatQ8_0>;
    default:
      fail(ErrorCode::kUnsupported, "cpu", "packed weights: type ", name(type),
           " has no packed layout");
  }
}

PackedGemmFn avx512vnni_packed_gemm(DType type) {
  switch (type) {
    case DType::Q4_0:
      return &gemm<FormatQ4_0>;
    case DType::Q4_1:
      return &gemm<FormatQ4_1>;
    case DType::Q5_0:
      return &gemm<FormatQ5_0>;
    case DType::Q5_1:
      return &gemm<FormatQ5_1>;
    case DType::Q8_0:
      return &gemm<FormatQ8_0>;
    default:
      fail(ErrorCode::kUnsupported, "cpu", "packed weights: type ", name(type),
           " has no packed kernel");
  }
}

}  // namespace af::cpu::quant::packed
