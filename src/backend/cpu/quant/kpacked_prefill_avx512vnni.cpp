// Prefill (many activation rows) AVX-512 VNNI matmul over the K-quant packed layout (kpacked.hpp).
//
// The packed layout already keeps "row r in lane r, 4 consecutive bytes per lane", so a panel of
// two groups (32 rows) is unpacked one super-block at a time into the unsigned bytes, int32
// scales and min factors of kquant_gemm.hpp's PanelBlock with plain loads, masks and shifts (no
// gathers, no transposes, no GGUF copy of the tile), and every activation row of the call then
// passes over it with kquant_gemm.hpp's panel_rows. The unpacking is paid once per panel block
// for all rows; before, prefill copied each tile back to GGUF rows with scalar 4-byte moves and
// then gathered and transposed those into the same PanelBlock (together about a third of the
// matmul time at 128 rows). The float steps are panel_rows', so the results keep the bits of the
// scalar reference (quant::ref::dot).
// GCC 12.2's avx512fintrin.h self-initialises the _mm512_undefined_* placeholders (GCC PR 105593),
// which -Wuninitialized reports wherever they are inlined; those values are never read.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>

#include "af/core/error.hpp"
#include "backend/cpu/quant/kpacked.hpp"
#include "backend/cpu/quant/kquant_gemm.hpp"

namespace af::cpu::quant::kpacked {
namespace {

namespace s = af::cpu::quant::simd;
using af::quant::kQKK;

inline __m512i load(const uint8_t* p) { return _mm512_loadu_si512(p); }

inline __m512 halves(const uint8_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// Q4_K / Q5_K (kFive): one packed group super-block `pb` into half h of the panel block.
// Chunk 8t + c holds qs bytes 32t + 4c .. + 3 of each row: its low nibbles are elements
// 64t + 4c + i (group 16t + c of 4 elements), its high nibbles elements 64t + 32 + 4c + i
// (group 16t + 8 + c); Q5_K's qh chunk c has the fifth bit of both at bits 2t and 2t + 1.
template <bool kFive>
void unpack_k4(const uint8_t* pb, int h, s::PanelBlock& out) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i bit5 = _mm512_set1_epi8(0x10);
  __m512i qh[8];
  if constexpr (kFive) {
    for (int c = 0; c < 8; ++c) qh[c] = load(pb + 2304 + 64 * c);
  }
  for (int t = 0; t < 4; ++t) {
    for (int c = 0; c < 8; ++c) {
      const __m512i w = load(pb + 256 + 64 * (8 * t + c));
      __m512i lo = _mm512_and_si512(w, low4);
      __m512i hi = _mm512_and_si512(_mm512_srli_epi16(w, 4), low4);
      if constexpr (kFive) {
        // Bit 2t (2t + 1) of every qh byte moved to bit 4 (0xf8: a | (b & c)).
        const __m512i b_lo =
            2 * t < 4 ? _mm512_slli_epi16(qh[c], 4 - 2 * t) : _mm512_srli_epi16(qh[c], 2 * t - 4);
        const __m512i b_hi = 2 * t + 1 < 4 ? _mm512_slli_epi16(qh[c], 3 - 2 * t)
                                           : _mm512_srli_epi16(qh[c], 2 * t - 3);
        lo = _mm512_ternarylogic_epi32(lo, b_lo, bit5, 0xf8);
        hi = _mm512_ternarylogic_epi32(hi, b_hi, bit5, 0xf8);
      }
      out.values[16 * t + c][h] = lo;
      out.values[16 * t + 8 + c][h] = hi;
    }
  }
  const __m512i words[3] = {load(pb + 64), load(pb + 128), load(pb + 192)};
  s::K4Panel<kFive>::store_scales16(words, h, out);
  _mm512_store_ps(out.d + 16 * h, halves(pb));
  _mm512_store_ps(out.dmin + 16 * h, halves(pb + 32));
}

// Q6_K: ql chunk 16n + 8hh + c holds ql bytes 64n + 32hh + 4c .. + 3: low nibbles are elements
// 128n + 32hh + 4c + i (group 32n + 8hh + c), high nibbles 128n + 64 + 32hh + 4c + i (group
// 32n + 16 + 8hh + c); their bits 4-5 are bits 2hh .. 2hh + 1 (4 + 2hh ..) of qh chunk 8n + c.
void unpack_q6_k(const uint8_t* pb, int h, s::PanelBlock& out) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i m30 = _mm512_set1_epi8(0x30);
  for (int n = 0; n < 2; ++n) {
    for (int c = 0; c < 8; ++c) {
      const __m512i qh = load(pb + 2336 + 64 * (8 * n + c));
      for (int hh = 0; hh < 2; ++hh) {
        const __m512i l = load(pb + 288 + 64 * (16 * n + 8 * hh + c));
        const __m512i top_lo = hh == 0 ? _mm512_slli_epi16(qh, 4) : _mm512_slli_epi16(qh, 2);
        const __m512i top_hi = hh == 0 ? qh : _mm512_srli_epi16(qh, 2);
        // 0xf8: a | (b & c), the nibble below and bits 4-5 from qh.
        out.values[32 * n + 8 * hh + c][h] =
            _mm512_ternarylogic_epi32(_mm512_and_si512(l, low4), top_lo, m30, 0xf8);
        out.values[32 * n + 16 + 8 * hh + c][h] = _mm512_ternarylogic_epi32(
            _mm512_and_si512(_mm512_srli_epi16(l, 4), low4), top_hi, m30, 0xf8);
      }
    }
  }
  __m512i sc[16];
  for (int j = 0; j < 16; ++j) {
    sc[j] =
        _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(pb + 32 + 16 * j)));
  }
  s::Q6KPanel::store_scales16(sc, h, out);
  _mm512_store_ps(out.d + 16 * h, halves(pb));
  _mm512_store_ps(out.dmin + 16 * h, _mm512_setzero_ps());
}

enum class Kind { kQ4_K, kQ5_K, kQ6_K };

template <Kind kKind>
struct Traits;
template <>
struct Traits<Kind::kQ4_K> {
  using Panel = s::K4Panel<false>;
  static constexpr int64_t kBlockBytes = 2304;
  static void unpack(const uint8_t* pb, int h, s::PanelBlock& out) { unpack_k4<false>(pb, h, out); }
};
template <>
struct Traits<Kind::kQ5_K> {
  using Panel = s::K4Panel<true>;
  static constexpr int64_t kBlockBytes = 2816;
  static void unpack(const uint8_t* pb, int h, s::PanelBlock& out) { unpack_k4<true>(pb, h, out); }
};
template <>
struct Traits<Kind::kQ6_K> {
  using Panel = s::Q6KPanel;
  static constexpr int64_t kBlockBytes = 3360;
  static void unpack(const uint8_t* pb, int h, s::PanelBlock& out) { unpack_q6_k(pb, h, out); }
};

// The values of half h of a panel whose second group is missing: zero bytes (their lanes are
// never stored, but their sums must not read uninitialised memory).
void clear_half(int h, s::PanelBlock& out) {
  for (auto& v : out.values) v[h] = _mm512_setzero_si512();
  for (auto& sc : out.scale) std::fill(sc + 16 * h, sc + 16 * h + 16, 0);
  for (auto& cr : out.corr) std::fill(cr + 16 * h, cr + 16 * h + 16, 0);
  std::fill(out.d + 16 * h, out.d + 16 * h + 16, 0.f);
  std::fill(out.dmin + 16 * h, out.dmin + 16 * h + 16, 0.f);
}

// Both groups' blocks at p and p + group_stride into L2 (the next panel block).
template <int64_t kBytes>
void prefetch_blocks(const uint8_t* p, int64_t group_stride) {
  for (int64_t off = 0; off < kBytes; off += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(p + off), _MM_HINT_T1);
    _mm_prefetch(reinterpret_cast<const char*>(p + group_stride + off), _MM_HINT_T1);
  }
}

// Activation rows [i0, i1) times one super-block of the unpacked panel, 4 rows at a time.
template <class Panel>
void rows_over_block(const s::PanelBlock& pb, const uint8_t* a, int64_t a_stride, int64_t i0,
                     int64_t i1, int64_t b, const __mmask16 mask[2], float* y, int64_t ldy) {
  const bool first = b == 0;
  int64_t i = i0;
  for (; i + Panel::kActRows <= i1; i += Panel::kActRows) {
    s::panel_rows<Panel, Panel::kActRows>(pb, a + i * a_stride, a_stride, b, first, mask,
                                          y + i * ldy, ldy);
  }
  for (; i + 2 <= i1; i += 2) {
    s::panel_rows<Panel, 2>(pb, a + i * a_stride, a_stride, b, first, mask, y + i * ldy, ldy);
  }
  if (i < i1)
    s::panel_rows<Panel, 1>(pb, a + i * a_stride, a_stride, b, first, mask, y + i * ldy, ldy);
}

template <Kind kKind>
void prefill_gemm(const uint8_t* w, int64_t g0, int64_t g1, int64_t n, int64_t k, const uint8_t* a,
                  int64_t a_stride, int64_t i0, int64_t i1, const float* bias, float* y,
                  int64_t ldy) {
  using T = Traits<kKind>;
  const int64_t nb = k / kQKK;
  const int64_t group_bytes = nb * T::kBlockBytes;
  s::PanelBlock pb;
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
      T::unpack(pg + b * T::kBlockBytes, 0, pb);
      if (pair) T::unpack(pg + group_bytes + b * T::kBlockBytes, 1, pb);
      // The next blocks (this panel's, or the next panel's first) are hinted into the cache
      // while the rows pass over this one: the weights come from memory, and the long pause
      // between two blocks of a stream leaves the hardware prefetchers behind.
      const uint8_t* next = b + 1 < nb ? pg + (b + 1) * T::kBlockBytes : pg + 2 * group_bytes;
      if (b + 1 < nb || g + 2 < g1) prefetch_blocks<T::kBlockBytes>(next, group_bytes);
      rows_over_block<typename T::Panel>(pb, a, a_stride, i0, i1, b, mask, y + j0, ldy);
    }
    if (bias) {
      for (int h = 0; h < 2; ++h) {
        const __m512 bv = _mm512_maskz_loadu_ps(mask[h], bias + j0 + 16 * h);
        for (int64_t i = i0; i < i1; ++i) {
          float* out = y + i * ldy + j0 + 16 * h;
          _mm512_mask_storeu_ps(out, mask[h],
                                _mm512_add_ps(_mm512_maskz_loadu_ps(mask[h], out), bv));
        }
      }
    }
  }
}

}  // namespace

GemmFn avx512vnni_prefill_gemm(DType type) {
  switch (type) {
    case DType::Q4_K:
      return &prefill_gemm<Kind::kQ4_K>;
    case DType::Q5_K:
      return &prefill_gemm<Kind::kQ5_K>;
    case DType::Q6_K:
      return &prefill_gemm<Kind::kQ6_K>;
    case DType::Q2_K:
    case DType::Q3_K:
      return avx512vnni_prefill_gemm_q23(type);
    default:
      return nullptr;
  }
}

}  // namespace af::cpu::quant::kpacked
