// Prefill (many activation rows) AVX-512 VNNI matmul over the K-quant packed layout (kpacked.hpp).
//
// The packed layout already keeps "row r in lane r, 4 consecutive bytes per lane", so a panel of
// two groups (32 rows) is unpacked one super-block at a time into the unsigned bytes, int32
// scales and min factors of kquant_gemm.hpp's PanelBlock with plain loads, masks and shifts (no
// gathers, no transposes, no GGUF copy of the tile), and every activation row of the call then
// passes over it with kquant_gemm.hpp's panel_rows (Q4_K, Q5_K) or q6_rows below (Q6_K, whose
// 16-value sub-blocks are scaled by vpdpwssd on int16 chains instead of vpmulld). The unpacking is
// paid once per panel block for all rows; before, prefill copied each tile back to GGUF rows with
// scalar 4-byte moves and then gathered and transposed those into the same PanelBlock (together
// about a third of the matmul time at 128 rows). The integer sums and float steps are those of
// quant::ref::dot, so the results keep the bits of the scalar reference.
//
// What bounds these kernels (measured on this CPU kind, Xeon 4th/5th gen, 2 vector ports for
// 512-bit ops): vpdpbusd alone runs 2 per cycle, but a 16-value Q6_K sub-block as 4 vpdpbusd +
// vpmulld + vpaddd per row half ran 1.0 vpdpbusd per cycle in isolation (Q4_K/Q5_K's 8 + 3:
// 1.4), and the panel loops ran within ~10-15% of that. The scale multiplies, not the unpacking
// (about 5% of the kernel at 128 rows), are what cost: q6_rows takes them to 2 vpdpwssd per
// sub-block (1.16x on the Q6_K kernel). The same split for Q4_K/Q5_K (two 16-value chains at a
// -16 offset, put back per super-block) measured no faster: 10.5 uops per sub-block against 11.
// GCC 12.2's avx512fintrin.h self-initialises the _mm512_undefined_* placeholders (GCC PR 105593),
// which -Wuninitialized reports wherever they are inlined; those values are never read.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

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
  // Scale j in the low word only (high word zero): q6_rows multiplies it by the low word of each
  // chain with vpdpwssd, and the chain's high word (its sign) must meet a zero.
  const __m512i low16 = _mm512_set1_epi32(0xFFFF);
  for (int j = 0; j < 16; ++j)
    _mm512_store_si512(out.scale[j] + 16 * h, _mm512_and_si512(sc[j], low16));
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

inline __m512i broadcast_dword(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// Q6_K: R activation rows times super-block b of the unpacked panel (same contract as
// kquant_gemm.hpp's panel_rows). Each 16-value sub-block sum is made of two chains of two
// 4-byte groups, each starting at -32 times its 8 activations' sum, so a chain is
// sum((q - 32) * a) over 8 values: |.| <= 8 * 32 * 127 = 32512 (Q8_K rows hold -127..127), an
// int16. One vpdpwssd then adds scale * chain to the total (scale in the low word, zero high
// word against the chain's sign word): 2 uops per sub-block where vpmulld + vpaddd took 3 on the
// two vector ports the vpdpbusd also need. The sum is the same integer, so the bits are the
// reference's.
template <int R>
void q6_rows(const s::PanelBlock& pb, const uint8_t* a, int64_t a_stride, int64_t b, bool first,
             const __mmask16 mask[2], float* y, int64_t ldy) {
  const s::BlockQ8_K* act[R];
  for (int r = 0; r < R; ++r) act[r] = reinterpret_cast<const s::BlockQ8_K*>(a + r * a_stride) + b;
  // starts[r][c]: low dword -32 * (activations 8c .. 8c + 7 of row r): vpsadbw sums 8 bytes
  // a + 128 into each qword, so -32 * sum(a) = 32768 - 32 * that.
  alignas(64) int64_t starts[R][32];
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i bias = _mm512_set1_epi64(32768);
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < 4; ++c) {
      const __m512i sums = _mm512_sad_epu8(
          _mm512_xor_si512(_mm512_loadu_si512(act[r]->qs + 64 * c), flip), _mm512_setzero_si512());
      _mm512_store_si512(starts[r] + 8 * c, _mm512_sub_epi64(bias, _mm512_slli_epi64(sums, 5)));
    }
  }
  __m512i total[R][2];
  for (int r = 0; r < R; ++r) total[r][0] = total[r][1] = _mm512_setzero_si512();
  for (int j = 0; j < 16; ++j) {
    const __m512i sc[2] = {_mm512_load_si512(pb.scale[j]), _mm512_load_si512(pb.scale[j] + 16)};
    for (int c = 0; c < 2; ++c) {
      __m512i chain[R][2];
      for (int r = 0; r < R; ++r) {
        chain[r][0] = chain[r][1] = broadcast_dword(starts[r] + 2 * j + c);
      }
      for (int u = 0; u < 2; ++u) {
        const int g = 4 * j + 2 * c + u;
        const __m512i w0 = pb.values[g][0];
        const __m512i w1 = pb.values[g][1];
        for (int r = 0; r < R; ++r) {
          const __m512i av = broadcast_dword(act[r]->qs + 4 * g);
          chain[r][0] = _mm512_dpbusd_epi32(chain[r][0], w0, av);
          chain[r][1] = _mm512_dpbusd_epi32(chain[r][1], w1, av);
        }
      }
      for (int r = 0; r < R; ++r) {
        for (int h = 0; h < 2; ++h) {
          total[r][h] = _mm512_dpwssd_epi32(total[r][h], chain[r][h], sc[h]);
        }
      }
    }
  }
  for (int h = 0; h < 2; ++h) {
    const __m512 d = _mm512_load_ps(pb.d + 16 * h);
    for (int r = 0; r < R; ++r) {
      float* out = y + r * ldy + 16 * h;
      const __m512 da = _mm512_set1_ps(act[r]->d);
      __m512 acc = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask[h], out);
      acc = _mm512_fmadd_ps(_mm512_mul_ps(d, da), _mm512_cvtepi32_ps(total[r][h]), acc);
      _mm512_mask_storeu_ps(out, mask[h], acc);
    }
  }
}

// R activation rows times one super-block: q6_rows for Q6_K, panel_rows for Q4_K / Q5_K.
template <class Panel, int R>
void panel_step(const s::PanelBlock& pb, const uint8_t* a, int64_t a_stride, int64_t b, bool first,
                const __mmask16 mask[2], float* y, int64_t ldy) {
  if constexpr (std::is_same_v<Panel, s::Q6KPanel>) {
    q6_rows<R>(pb, a, a_stride, b, first, mask, y, ldy);
  } else {
    s::panel_rows<Panel, R>(pb, a, a_stride, b, first, mask, y, ldy);
  }
}

// Activation rows [i0, i1) times one super-block of the unpacked panel, 4 rows at a time.
template <class Panel>
void rows_over_block(const s::PanelBlock& pb, const uint8_t* a, int64_t a_stride, int64_t i0,
                     int64_t i1, int64_t b, const __mmask16 mask[2], float* y, int64_t ldy) {
  const bool first = b == 0;
  int64_t i = i0;
  for (; i + Panel::kActRows <= i1; i += Panel::kActRows) {
    panel_step<Panel, Panel::kActRows>(pb, a + i * a_stride, a_stride, b, first, mask, y + i * ldy,
                                       ldy);
  }
  for (; i + 2 <= i1; i += 2) {
    panel_step<Panel, 2>(pb, a + i * a_stride, a_stride, b, first, mask, y + i * ldy, ldy);
  }
  if (i < i1)
    panel_step<Panel, 1>(pb, a + i * a_stride, a_stride, b, first, mask, y + i * ldy, ldy);
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
