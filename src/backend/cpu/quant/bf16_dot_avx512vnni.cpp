// vdpbf16ps kernels (compiled with AVX512_BF16; see src/backend/CMakeLists.txt).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "backend/cpu/quant/bf16_dot.hpp"

namespace af::cpu::quant {
namespace {

__mmask32 tail_mask(int64_t n) {  // n < 32
  return static_cast<__mmask32>((uint64_t{1} << n) - 1);
}

__m512bh load_bh(const uint16_t* p) { return reinterpret_cast<__m512bh>(_mm512_loadu_si512(p)); }
__m512bh load_bh_tail(const uint16_t* p, int64_t n) {
  return reinterpret_cast<__m512bh>(_mm512_maskz_loadu_epi16(tail_mask(n), p));
}

// MR activation rows x NR weight rows.
template <int MR, int NR>
void tile(int64_t k, const uint16_t* w, const uint16_t* xb, float* y, int64_t ldy) {
  __m512 acc[MR][NR];
  for (int r = 0; r < MR; ++r) {
    for (int c = 0; c < NR; ++c) acc[r][c] = _mm512_setzero_ps();
  }
  int64_t t = 0;
  for (; t + 32 <= k; t += 32) {
    __m512bh wv[NR];
    for (int c = 0; c < NR; ++c) wv[c] = load_bh(w + c * k + t);
    for (int r = 0; r < MR; ++r) {
      const __m512bh xv = load_bh(xb + r * k + t);
      for (int c = 0; c < NR; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], xv, wv[c]);
    }
  }
  if (t < k) {
    __m512bh wv[NR];
    for (int c = 0; c < NR; ++c) wv[c] = load_bh_tail(w + c * k + t, k - t);
    for (int r = 0; r < MR; ++r) {
      const __m512bh xv = load_bh_tail(xb + r * k + t, k - t);
      for (int c = 0; c < NR; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], xv, wv[c]);
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int c = 0; c < NR; ++c) y[r * ldy + c] = _mm512_reduce_add_ps(acc[r][c]);
  }
}

}  // namespace

void bf16_round_row(const float* x, uint16_t* out, int64_t k) {
  int64_t i = 0;
  for (; i + 32 <= k; i += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
    _mm512_storeu_si512(out + i, reinterpret_cast<__m512i>(v));
  }
  for (; i < k; i += 16) {
    const int64_t n = k - i < 16 ? k - i : 16;
    const auto mask = static_cast<__mmask16>((1u << n) - 1u);
    const __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, x + i));
    _mm256_mask_storeu_epi16(out + i, mask, reinterpret_cast<__m256i>(v));
  }
}

void bf16_dot_rows(int64_t k, const uint16_t* w, int64_t n_begin, int64_t n_end, const uint16_t* xb,
                   int64_t m, float* y, int64_t ldy) {
  constexpr int kMR = 6, kNR = 4;
  int64_t i = 0;
  for (; i + kMR <= m; i += kMR) {
    int64_t j = n_begin;
    for (; j + kNR <= n_end; j += kNR) {
      tile<kMR, kNR>(k, w + j * k, xb + i * k, y + i * ldy + j, ldy);
    }
    for (; j < n_end; ++j) {
      for (int r = 0; r < kMR; ++r) {
        tile<1, 1>(k, w + j * k, xb + (i + r) * k, y + (i + r) * ldy + j, ldy);
      }
    }
  }
  for (; i < m; ++i) {
    int64_t j = n_begin;
    for (; j + kNR <= n_end; j += kNR) tile<1, kNR>(k, w + j * k, xb + i * k, y + i * ldy + j, ldy);
    for (; j < n_end; ++j) tile<1, 1>(k, w + j * k, xb + i * k, y + i * ldy + j, ldy);
  }
}

}  // namespace af::cpu::quant
