#pragma once
// Norms, RoPE, softmax, activations and attention over vector traits V, plus the KernelTable
// that collects them (include only from ISA files; see simd_common.hpp).
#include "af/backend/key_cache.hpp"
#include "backend/cpu/kernels/reference.hpp"
#include "backend/cpu/kernels/simd_common.hpp"
#include "backend/cpu/kernels/simd_matmul.hpp"

namespace af::cpu {
namespace {

// x, y: [rows, dim]; w: [dim].
template <class V>
void rms_norm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* y) {
  using F = typename V::F;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    const float ss = dot<V>(xr, xr, dim);
    const F inv = V::set1(1.0f / sqrtf(ss / static_cast<float>(dim) + eps));
    int64_t i = 0;
    for (; i + V::kLanes <= dim; i += V::kLanes) {
      V::store(yr + i, V::mul(V::mul(V::load(xr + i), inv), V::load(w + i)));
    }
    if (i < dim) {
      const int rem = static_cast<int>(dim - i);
      const F v = V::mul(V::mul(V::load_partial(xr + i, rem), inv), V::load_partial(w + i, rem));
      V::store_partial(yr + i, v, rem);
    }
  }
}

// x, y: [rows, dim]; w, b: [dim] (b may be null). Two passes (mean, then centred variance), as
// the one-pass E[x²] - E[x]² loses precision when |mean| >> std.
template <class V>
void layer_norm(const float* x, const float* w, const float* b, int64_t rows, int64_t dim,
                float eps, float* y) {
  using F = typename V::F;
  constexpr int L = V::kLanes;
  const int64_t dv = dim - dim % L;
  const int rem = static_cast<int>(dim - dv);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    F acc = V::zero();
    for (int64_t i = 0; i < dv; i += L) acc = V::add(acc, V::load(xr + i));
    if (rem) acc = V::add(acc, V::load_partial(xr + dv, rem));
    const float mean_s = V::hsum(acc) / static_cast<float>(dim);
    const F mean = V::set1(mean_s);
    acc = V::zero();
    for (int64_t i = 0; i < dv; i += L) {
      const F d = V::sub(V::load(xr + i), mean);
      acc = V::fmadd(d, d, acc);
    }
    if (rem) {  // padded lanes load as the mean so they add nothing to the variance
      const F d = V::sub(V::load_partial_fill(xr + dv, rem, mean_s), mean);
      acc = V::fmadd(d, d, acc);
    }
    const F inv = V::set1(1.0f / sqrtf(V::hsum(acc) / static_cast<float>(dim) + eps));
    for (int64_t i = 0; i < dv; i += L) {
      const F n = V::mul(V::sub(V::load(xr + i), mean), inv);
      V::store(yr + i, b ? V::fmadd(n, V::load(w + i), V::load(b + i)) : V::mul(n, V::load(w + i)));
    }
    if (rem) {
      const F n = V::mul(V::sub(V::load_partial(xr + dv, rem), mean), inv);
      const F wv = V::load_partial(w + dv, rem);
      V::store_partial(yr + dv, b ? V::fmadd(n, wv, V::load_partial(b + dv, rem)) : V::mul(n, wv),
                       rem);
    }
  }
}

// x: [n_tokens, n_heads * head_dim]; scratch[3 * rotary_dim]. The cos/sin values come from the
// shared scalar ref::rope_angles, so every ISA rotates by bit-identical angles.
template <class V>
void rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t rotary_dim,
          const int32_t* positions, const float* inv_freq, RopeLayout layout, float* scratch) {
  using F = typename V::F;
  constexpr int L = V::kLanes;
  const int64_t half = rotary_dim / 2;
  float* angles = scratch + 2 * rotary_dim;  // [cos(half), sin(half)]
  float* cc = scratch;                       // interleaved: cos of pair i at 2i and 2i + 1
  float* ss = scratch + rotary_dim;          // interleaved: -sin at 2i, +sin at 2i + 1
  for (int64_t t = 0; t < n_tokens; ++t) {
    ref::rope_angles(positions[t], inv_freq, half, angles);
    const float* cs = angles;
    const float* sn = angles + half;
    if (layout == RopeLayout::kInterleaved) {
      for (int64_t i = 0; i < half; ++i) {
        cc[2 * i] = cc[2 * i + 1] = cs[i];
        ss[2 * i] = -sn[i];
        ss[2 * i + 1] = sn[i];
      }
    }
    for (int64_t h = 0; h < n_heads; ++h) {
      float* xh = x + (t * n_heads + h) * head_dim;
      if (layout == RopeLayout::kHalf) {
        for (int64_t i = 0; i < half; i += L) {
          const int cnt = static_cast<int>(min_i64(L, half - i));
          const bool full = cnt == L;
          const F x0 = full ? V::load(xh + i) : V::load_partial(xh + i, cnt);
          const F x1 = full ? V::load(xh + half + i) : V::load_partial(xh + half + i, cnt);
          const F c = full ? V::load(cs + i) : V::load_partial(cs + i, cnt);
          const F s = full ? V::load(sn + i) : V::load_partial(sn + i, cnt);
          const F y0 = V::sub(V::mul(x0, c), V::mul(x1, s));
          const F y1 = V::add(V::mul(x1, c), V::mul(x0, s));
          if (full) {
            V::store(xh + i, y0);
            V::store(xh + half + i, y1);
          } else {
            V::store_partial(xh + i, y0, cnt);
            V::store_partial(xh + half + i, y1, cnt);
          }
        }
      } else {
        // Pairs never straddle a vector: L is even and rotary_dim is even.
        for (int64_t i = 0; i < rotary_dim; i += L) {
          const int cnt = static_cast<int>(min_i64(L, rotary_dim - i));
          const bool full = cnt == L;
          const F xv = full ? V::load(xh + i) : V::load_partial(xh + i, cnt);
          const F c = full ? V::load(cc + i) : V::load_partial(cc + i, cnt);
          const F s = full ? V::load(ss + i) : V::load_partial(ss + i, cnt);
          const F yv = V::add(V::mul(xv, c), V::mul(V::swap_pairs(xv), s));
          if (full) {
            V::store(xh + i, yv);
          } else {
            V::store_partial(xh + i, yv, cnt);
          }
        }
      }
    }
  }
}

// x: [rows, n].
template <class V>
void softmax(float* x, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) softmax_row<V>(x + r * n, n);
}

// silu(x) = x / (1 + e^-x), PyTorch's formula.
template <class V>
inline typename V::F silu_v(typename V::F x) {
  const typename V::F one = V::set1(1.0f);
  return V::div(x, V::add(one, exp_approx<V>(V::sub(V::zero(), x))));
}

template <class V>
void silu(float* x, int64_t n) {
  map_inplace<V>(x, n, [](typename V::F v) { return silu_v<V>(v); });
}

// gate[n], up[n].
template <class V>
void silu_mul(float* gate, const float* up, int64_t n) {
  int64_t i = 0;
  for (; i + V::kLanes <= n; i += V::kLanes) {
    V::store(gate + i, V::mul(silu_v<V>(V::load(gate + i)), V::load(up + i)));
  }
  if (i < n) {
    const int rem = static_cast<int>(n - i);
    const typename V::F g = silu_v<V>(V::load_partial(gate + i, rem));
    V::store_partial(gate + i, V::mul(g, V::load_partial(up + i, rem)), rem);
  }
}

// 0.5 x (1 + tanh(u)) rewritten as x / (1 + e^(-2u)): algebraically equal, and it avoids the
// cancellation of 1 + tanh(u) for negative x.
template <class V>
void gelu_tanh(float* x, int64_t n) {
  map_inplace<V>(x, n, [](typename V::F v) {
    const typename V::F v3 = V::mul(V::mul(v, v), v);
    const typename V::F u =
        V::mul(V::set1(0.7978845608028654f), V::fmadd(V::set1(0.044715f), v3, v));
    const typename V::F e = exp_approx<V>(V::mul(V::set1(-2.0f), u));
    return V::div(v, V::add(V::set1(1.0f), e));
  });
}

// gelu(x) = 0.5 x (1 + erf(x / sqrt2)) = max(x, 0) - 0.5 |x| erfc(|x| / sqrt2), with erfc(a) for
// a >= 0 by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7, times e^(-a^2) so far smaller in the
// tail): no cancellation for negative x. Whisper's encoder runs it on 1500 x ffn values per
// layer, where erff per element cost ~7% of a transcription.
template <class V>
void gelu_erf(float* x, int64_t n) {
  using F = typename V::F;
  map_inplace<V>(x, n, [](F v) {
    const F ax = V::max(v, V::sub(V::zero(), v));
    const F a = V::mul(ax, V::set1(0.70710678118654752f));
    const F t = V::div(V::set1(1.0f), V::fmadd(V::set1(0.3275911f), a, V::set1(1.0f)));
    F p = V::set1(1.061405429f);
    p = V::fmadd(p, t, V::set1(-1.453152027f));
    p = V::fmadd(p, t, V::set1(1.421413741f));
    p = V::fmadd(p, t, V::set1(-0.284496736f));
    p = V::fmadd(p, t, V::set1(0.254829592f));
    const F erfc = V::mul(V::mul(p, t), exp_approx<V>(V::mul(V::sub(V::zero(), a), a)));
    return V::sub(V::max(v, V::zero()), V::mul(V::mul(V::set1(0.5f), ax), erfc));
  });
}

// quick_gelu(x) = x * sigmoid(1.702x), as x / (1 + e^(-1.702x)) (silu's form at 1.702x).
template <class V>
void gelu_quick(float* x, int64_t n) {
  const typename V::F k = V::set1(-1.702f);
  map_inplace<V>(x, n, [k](typename V::F v) {
    return V::div(v, V::add(V::set1(1.0f), exp_approx<V>(V::mul(k, v))));
  });
}

// y[n] += scale * x[n].
template <class V>
void add_scaled(float* y, const float* x, float scale, int64_t n) {
  const typename V::F s = V::set1(scale);
  int64_t i = 0;
  for (; i + V::kLanes <= n; i += V::kLanes) {
    V::store(y + i, V::fmadd(s, V::load(x + i), V::load(y + i)));
  }
  if (i < n) {
    const int rem = static_cast<int>(n - i);
    const typename V::F v = V::fmadd(s, V::load_partial(x + i, rem), V::load_partial(y + i, rem));
    V::store_partial(y + i, v, rem);
  }
}

template <class V>
void scale(float* x, float scale, int64_t n) {
  const typename V::F s = V::set1(scale);
  map_inplace<V>(x, n, [s](typename V::F v) { return V::mul(v, s); });
}

// Rows an attention item scores at once against a vector of keys.
constexpr int kRowTile = kAttentionRowTile;

// Copies rows [0, nr) of a row tile, q_rows[r][0, head_dim), dimension-major into
// qt[d * kRowTile + r], so the scores' broadcasts all come off one pointer.
inline void gather_query_tile(const float* const* q_rows, int nr, int64_t head_dim, float* qt) {
  for (int64_t d = 0; d < head_dim; ++d) {
    for (int r = 0; r < nr; ++r) qt[d * kRowTile + r] = q_rows[r][d];
  }
}

// A vector of cached keys or values widened to float: float32 as is, f16 exactly.
template <class V>
inline typename V::F load_kv(const float* p) {
  return V::load(p);
}
template <class V>
inline typename V::F load_kv(const uint16_t* p) {
  return V::load_f16(p);
}
template <class V>
inline typename V::F load_kv_partial(const float* p, int n) {
  return V::load_partial(p, n);
}
template <class V>
inline typename V::F load_kv_partial(const uint16_t* p, int n) {
  return V::load_f16_partial(p, n);
}

// The kernels' element type int8_t stands for a q8_0 cache (af/backend/key_cache.hpp): its
// pointers count bytes and its scales come from the layout.
template <class T>
struct IsQ8 {
  static constexpr bool value = false;
};
template <>
struct IsQ8<int8_t> {
  static constexpr bool value = true;
};

// score_rows over q8_0 keys: per block of kKvQ8Block dimensions the int8 keys (widened exactly)
// are scored against the query rows, then the block's sums are scaled by each key's f16 scale
// (ks[g] + b * kKeyBlock: the kLanes keys' scales of block b) into scores. The running totals
// stay in scores (L1), so only the block's NG x NR sums need registers.
template <class V, int NR, int NG>
inline void score_rows_q8(const float* qt, const int8_t* const* kt, const uint16_t* const* ks,
                          int64_t head_dim, typename V::F* scores) {
  using F = typename V::F;
  for (int g = 0; g < NG; ++g) {
    for (int r = 0; r < NR; ++r) scores[g * kRowTile + r] = V::zero();
  }
  for (int64_t d0 = 0, b = 0; d0 < head_dim; d0 += kKvQ8Block, ++b) {
    const int64_t d1 = min_i64(d0 + kKvQ8Block, head_dim);
    F a[NG][NR];
    for (int g = 0; g < NG; ++g) {
      for (int r = 0; r < NR; ++r) a[g][r] = V::zero();
    }
    for (int64_t d = d0; d < d1; ++d) {
      F kd[NG];
      for (int g = 0; g < NG; ++g) kd[g] = V::load_i8(kt[g] + d * kKeyBlock);
      const float* qd = qt + d * kRowTile;
      for (int r = 0; r < NR; ++r) {
        const F qb = V::set1(qd[r]);
        for (int g = 0; g < NG; ++g) a[g][r] = V::fmadd(qb, kd[g], a[g][r]);
      }
    }
    for (int g = 0; g < NG; ++g) {
      const F sc = V::load_f16(ks[g] + b * kKeyBlock);
      for (int r = 0; r < NR; ++r) {
        scores[g * kRowTile + r] = V::fmadd(a[g][r], sc, scores[g * kRowTile + r]);
      }
    }
  }
}

// Score rows [0, NR) of a query tile qt (gather_query_tile) against NG vectors of kLanes keys:
// scores[g * kRowTile + r] = sum over d of qt[d * kRowTile + r] * kt[g][d * kKeyBlock], kt[g]
// pointing into the key cache's blocked layout (af/backend/key_cache.hpp), where dimension d of
// consecutive keys is contiguous, so one vector holds kLanes keys' scores and no horizontal sum
// is needed. Two key vectors per pass halve the broadcasts per multiply-add.
template <class V, int NR, int NG, class T>
inline void score_rows(const float* qt, const T* const* kt, int64_t head_dim,
                       typename V::F* scores) {
  using F = typename V::F;
  F a[NG][NR];
  for (int g = 0; g < NG; ++g) {
    for (int r = 0; r < NR; ++r) a[g][r] = V::zero();
  }
  for (int64_t d = 0; d < head_dim; ++d) {
    F kd[NG];
    for (int g = 0; g < NG; ++g) kd[g] = load_kv<V>(kt[g] + d * kKeyBlock);
    const float* qd = qt + d * kRowTile;
    for (int r = 0; r < NR; ++r) {
      const F qb = V::set1(qd[r]);
      for (int g = 0; g < NG; ++g) a[g][r] = V::fmadd(qb, kd[g], a[g][r]);
    }
  }
  for (int g = 0; g < NG; ++g) {
    for (int r = 0; r < NR; ++r) scores[g * kRowTile + r] = a[g][r];
  }
}

// score_rows or score_rows_q8 by the cache's element type (ks: q8_0 key scales, else unused).
template <class V, int NR, int NG, class T>
inline void score_rows_any(const float* qt, const T* const* kt, const uint16_t* const* ks,
                           int64_t head_dim, typename V::F* scores) {
  if constexpr (IsQ8<T>::value) {
    score_rows_q8<V, NR, NG>(qt, kt, ks, head_dim, scores);
  } else {
    (void)ks;
    score_rows<V, NR, NG>(qt, kt, head_dim, scores);
  }
}

// score_rows for nr (1 to kRowTile) rows.
template <class V, int NG, class T>
inline void score_block(int nr, const float* qt, const T* const* kt, const uint16_t* const* ks,
                        int64_t head_dim, typename V::F* scores) {
  static_assert(kRowTile == 8, "one case per row count");
  switch (nr) {
    case 8:
      return score_rows_any<V, 8, NG>(qt, kt, ks, head_dim, scores);
    case 7:
      return score_rows_any<V, 7, NG>(qt, kt, ks, head_dim, scores);
    case 6:
      return score_rows_any<V, 6, NG>(qt, kt, ks, head_dim, scores);
    case 5:
      return score_rows_any<V, 5, NG>(qt, kt, ks, head_dim, scores);
    case 4:
      return score_rows_any<V, 4, NG>(qt, kt, ks, head_dim, scores);
    case 3:
      return score_rows_any<V, 3, NG>(qt, kt, ks, head_dim, scores);
    case 2:
      return score_rows_any<V, 2, NG>(qt, kt, ks, head_dim, scores);
    default:
      return score_rows_any<V, 1, NG>(qt, kt, ks, head_dim, scores);
  }
}

// score_block for ng key vectors: NG (the most a step takes) or 1 (the last vector).
template <class V, int NG, class T>
inline void score_groups(int ng, int nr, const float* qt, const T* const* kt,
                         const uint16_t* const* ks, int64_t head_dim, typename V::F* scores) {
  if (ng == NG) return score_block<V, NG>(nr, qt, kt, ks, head_dim, scores);
  score_block<V, 1>(nr, qt, kt, ks, head_dim, scores);
}

// For rows r < NR: acc[r][0, head_dim) += sum over keys i < n_keys of p[r][i] * v_rows[i *
// kv_stride ..]. Up to 4 x NR output vectors stay in registers while the block's value rows
// (L1-resident after the first row) stream past, each loaded once for the NR rows.
// Prefetch (decode, values streamed from memory): each key's value row is asked for
// kPrefetchValueRows keys ahead, as the rows of one KV head lie kv_stride apart and the hardware
// prefetchers stop at every 4 KiB page.
inline constexpr int64_t kPrefetchValueRows = 16;

// accumulate_values over q8_0 value rows (v_rows: the KV head's first block_q8_0 of the first
// key, rows row_bytes apart): each key's quants are widened exactly and weighted by p[r][i] *
// its block's scale. A pass covers 2 * kLanes dimensions, inside one block.
template <class V, int NR, bool Prefetch>
inline void accumulate_values_q8(const float* const* p, int64_t n_keys, const int8_t* v_rows,
                                 int64_t row_bytes, int64_t head_dim, float* const* acc) {
  using F = typename V::F;
  constexpr int L = V::kLanes;
  static_assert(kKvQ8Block % (2 * L) == 0, "a pass stays inside one q8_0 block");
  for (int64_t d = 0; d < head_dim; d += 2 * L) {
    const int8_t* block = v_rows + d / kKvQ8Block * kKvQ8BlockBytes;
    const int64_t quants = 2 + d % kKvQ8Block;  // this pass's quants within the block
    const int n0 = static_cast<int>(min_i64(L, head_dim - d));
    const int n1 = static_cast<int>(max_i64(0, min_i64(L, head_dim - d - L)));
    F a[NR][2];
    for (int r = 0; r < NR; ++r) {
      a[r][0] = V::load_partial(acc[r] + d, n0);
      a[r][1] = n1 > 0 ? V::load_partial(acc[r] + d + L, n1) : V::zero();
    }
    for (int64_t i = 0; i < n_keys; ++i) {
      const int8_t* bi = block + i * row_bytes;
      if constexpr (Prefetch) {
        _mm_prefetch(reinterpret_cast<const char*>(bi + kPrefetchValueRows * row_bytes),
                     _MM_HINT_T0);
      }
      uint16_t half;
      __builtin_memcpy(&half, bi, sizeof(half));
      const float scale = _cvtsh_ss(half);
      // A short last block is zero-padded to kKvQ8Block, so both loads stay inside it.
      const F v0 = V::load_i8(bi + quants), v1 = V::load_i8(bi + quants + L);
      for (int r = 0; r < NR; ++r) {
        const F w = V::set1(p[r][i] * scale);
        a[r][0] = V::fmadd(w, v0, a[r][0]);
        a[r][1] = V::fmadd(w, v1, a[r][1]);
      }
    }
    for (int r = 0; r < NR; ++r) {
      V::store_partial(acc[r] + d, a[r][0], n0);
      if (n1 > 0) V::store_partial(acc[r] + d + L, a[r][1], n1);
    }
  }
}

template <class V, int NR, class T, bool Prefetch>
inline void accumulate_values_dense(const float* const* p, int64_t n_keys, const T* v_rows,
                                    int64_t kv_stride, int64_t head_dim, float* const* acc) {
  using F = typename V::F;
  constexpr int L = V::kLanes;
  int64_t d = 0;
  for (; d + 4 * L <= head_dim; d += 4 * L) {
    F a[NR][4];
    for (int r = 0; r < NR; ++r) {
      for (int c = 0; c < 4; ++c) a[r][c] = V::load(acc[r] + d + c * L);
    }
    for (int64_t i = 0; i < n_keys; ++i) {
      const T* vi = v_rows + i * kv_stride + d;
      if constexpr (Prefetch) {
        // Prefetches never fault: past the chunk's last row is harmless.
        const char* ahead = reinterpret_cast<const char*>(vi + kPrefetchValueRows * kv_stride);
        for (size_t b = 0; b < 4 * L * sizeof(T); b += 64) _mm_prefetch(ahead + b, _MM_HINT_T0);
      }
      const F v0 = load_kv<V>(vi), v1 = load_kv<V>(vi + L), v2 = load_kv<V>(vi + 2 * L),
              v3 = load_kv<V>(vi + 3 * L);
      for (int r = 0; r < NR; ++r) {
        const F w = V::set1(p[r][i]);
        a[r][0] = V::fmadd(w, v0, a[r][0]);
        a[r][1] = V::fmadd(w, v1, a[r][1]);
        a[r][2] = V::fmadd(w, v2, a[r][2]);
        a[r][3] = V::fmadd(w, v3, a[r][3]);
      }
    }
    for (int r = 0; r < NR; ++r) {
      for (int c = 0; c < 4; ++c) V::store(acc[r] + d + c * L, a[r][c]);
    }
  }
  for (; d < head_dim; d += L) {
    const int cnt = static_cast<int>(min_i64(L, head_dim - d));
    F a[NR];
    for (int r = 0; r < NR; ++r) a[r] = V::load_partial(acc[r] + d, cnt);
    for (int64_t i = 0; i < n_keys; ++i) {
      const T* vi = v_rows + i * kv_stride + d;
      const F vv = cnt == L ? load_kv<V>(vi) : load_kv_partial<V>(vi, cnt);
      for (int r = 0; r < NR; ++r) a[r] = V::fmadd(V::set1(p[r][i]), vv, a[r]);
    }
    for (int r = 0; r < NR; ++r) V::store_partial(acc[r] + d, a[r], cnt);
  }
}

// accumulate_values_dense, or accumulate_values_q8 for a q8_0 cache (kv_stride: its row bytes).
template <class V, int NR, class T, bool Prefetch = false>
inline void accumulate_values(const float* const* p, int64_t n_keys, const T* v_rows,
                              int64_t kv_stride, int64_t head_dim, float* const* acc) {
  if constexpr (IsQ8<T>::value) {
    accumulate_values_q8<V, NR, Prefetch>(p, n_keys, v_rows, kv_stride, head_dim, acc);
  } else {
    accumulate_values_dense<V, NR, T, Prefetch>(p, n_keys, v_rows, kv_stride, head_dim, acc);
  }
}

// accumulate_values for nr (1 to 4) rows.
template <class V, class T, bool Prefetch = false>
inline void accumulate_value_rows(int nr, const float* const* p, int64_t n_keys, const T* v_rows,
                                  int64_t kv_stride, int64_t head_dim, float* const* acc) {
  switch (nr) {
    case 4:
      return accumulate_values<V, 4, T, Prefetch>(p, n_keys, v_rows, kv_stride, head_dim, acc);
    case 3:
      return accumulate_values<V, 3, T, Prefetch>(p, n_keys, v_rows, kv_stride, head_dim, acc);
    case 2:
      return accumulate_values<V, 2, T, Prefetch>(p, n_keys, v_rows, kv_stride, head_dim, acc);
    default:
      return accumulate_values<V, 1, T, Prefetch>(p, n_keys, v_rows, kv_stride, head_dim, acc);
  }
}

// See AttentionFn in kernel_table.hpp. Flash-attention style: keys go by groups of kLanes
// (aligned to kLanes, which divides kKeyBlock), each read straight from the key cache's blocked
// layout and scored against every row of the item (all query heads of the KV head, all tokens),
// then each row's running max, lane-wise running sums and accumulator are rescaled when its max
// grows, and its probabilities weight the value rows. A chunk that starts inside a group masks
// the group's keys before key_begin; keys past the chunk's (or a row's causal) end are masked too,
// so cache slots past the last stored position never weigh in, whatever they hold.
// scratch: [round_up(rows, kRowTile) * head_dim] query tiles, [rows * 2 * kLanes] probabilities,
// [rows * kLanes] lane-wise sums, and for decode [rows * round_up(key_end - key_begin + kLanes -
// 1, kLanes)] scores.
// TK / TV: the key / value cache elements: float, uint16_t (f16) or int8_t (q8_0, whose pointers
// count bytes of the layouts in af/backend/key_cache.hpp).
template <class V, class TK, class TV>
void attention(const float* q, const TK* k, const TV* v, const AttentionShape& shape,
               int64_t kv_head, int64_t t_begin, int64_t t_end, int64_t key_begin, int64_t key_end,
               float* acc, float* row_max, float* row_sum, float* scratch) {
  using F = typename V::F;
  constexpr int L = V::kLanes;
  static_assert(kKeyBlock % L == 0, "a key block holds whole vectors");
  // Key vectors scored per pass in decode: two where the registers allow (AVX-512's 32).
  constexpr int kDecodeGroups = L == 16 ? 2 : 1;
  const int64_t head_dim = shape.head_dim;
  const int64_t n_kv_heads = shape.n_kv_heads;
  const int64_t group = shape.n_heads / n_kv_heads;
  const int64_t q_stride = shape.n_heads * head_dim;
  const int64_t kv_stride = n_kv_heads * head_dim;
  const int64_t rows = (t_end - t_begin) * group;
  const int64_t n_tiles = (rows + kRowTile - 1) / kRowTile;
  float* q_tiles = scratch;  // tile i at q_tiles + i * head_dim * kRowTile
  float* probs = q_tiles + n_tiles * head_dim * kRowTile;
  float* sums = probs + rows * kDecodeGroups * L;
  for (int64_t r0 = 0; r0 < rows; r0 += kRowTile) {
    const int nr = static_cast<int>(min_i64(kRowTile, rows - r0));
    const float* q_rows[kRowTile];
    for (int r = 0; r < nr; ++r) {
      const int64_t t = t_begin + (r0 + r) / group;
      q_rows[r] = q + t * q_stride + (kv_head * group + (r0 + r) % group) * head_dim;
    }
    gather_query_tile(q_rows, nr, head_dim, q_tiles + r0 * head_dim);
  }
  for (int64_t r = 0; r < rows; ++r) {
    row_max[r] = -INFINITY;
    V::store(sums + r * L, V::zero());
    for (int64_t d = 0; d < head_dim; ++d) acc[r * head_dim + d] = 0.0f;
  }
  // The last key any row of the item may see, plus one.
  const int64_t item_end = min_i64(key_end, shape.n_past + t_end);
  if (item_end <= key_begin) {
    for (int64_t r = 0; r < rows; ++r) row_sum[r] = 0.0f;
    return;
  }
  // The first key of the vector group that holds key_begin.
  const int64_t group_begin = key_begin - key_begin % L;
  // Where KV head kv_head's slice of the key block holding position pos starts, and its bytes.
  const auto key_slice = [&](int64_t pos) {
    if constexpr (IsQ8<TK>::value) {
      return k + q8_key_slice_offset(pos, kv_head, n_kv_heads, head_dim);
    } else {
      return k + key_block_offset(pos, kv_head, n_kv_heads, head_dim);
    }
  };
  const size_t key_slice_bytes = IsQ8<TK>::value
                                     ? static_cast<size_t>(q8_key_slice_bytes(head_dim))
                                     : static_cast<size_t>(head_dim * kKeyBlock) * sizeof(TK);
  // Dimension 0 of keys j .. j + L - 1 (j a multiple of L) of this KV head, and for q8_0 keys
  // their block-0 scales (the scale rows follow the head_dim quant rows).
  const auto keys_at = [&](int64_t j) { return key_slice(j) + j % kKeyBlock; };
  const auto scales_at = [&](int64_t j) -> const uint16_t* {
    if constexpr (IsQ8<TK>::value) {
      return reinterpret_cast<const uint16_t*>(key_slice(j) + kKeyBlock * head_dim) + j % kKeyBlock;
    } else {
      (void)j;
      return nullptr;
    }
  };
  // Values: KV head kv_head's part of the row of key 0, and the distance between rows (in TV).
  const int64_t v_stride =
      IsQ8<TV>::value ? value_row_bytes(DType::Q8_0, n_kv_heads, head_dim) : kv_stride;
  const TV* v_head = v + kv_head * (IsQ8<TV>::value ? q8_value_head_bytes(head_dim) : head_dim);
  const F score_scale = V::set1(shape.scale);
  if (shape.n_tokens == 1) {
    // Decode: every key of the chunk is visible to every row, so score the whole chunk first,
    // then one softmax per row, then the values with each row's accumulators held in registers
    // over the whole chunk. Per-block softmax bookkeeping (horizontal max, rescaling) would
    // otherwise dominate: the rows are few and the work per key small.
    const int64_t lead = key_begin - group_begin;  // masked keys before key_begin
    const int64_t n = item_end - key_begin;
    const int64_t padded = (lead + n + L - 1) / L * L;
    // sc[row * padded + i]: row's scaled score of key group_begin + i.
    float* sc = sums + rows * L;
    // A KV head's rows of consecutive key blocks lie n_kv_heads blocks apart (4 KiB each at
    // head_dim 64), and the hardware prefetchers stop at every page: ask for the block
    // kPrefetchKeyBlocks ahead when a block starts.
    constexpr int64_t kPrefetchKeyBlocks = 2;
    for (int64_t j = group_begin; j < item_end;) {
      const int ng = j + L < item_end ? kDecodeGroups : 1;
      const TK* kt[kDecodeGroups];
      const uint16_t* ks[kDecodeGroups];
      for (int g = 0; g < ng; ++g) {
        kt[g] = keys_at(j + g * L);
        ks[g] = scales_at(j + g * L);
      }
      for (int g = 0; g < ng; ++g) {
        const int64_t pos = j + g * L;
        if (pos % kKeyBlock != 0) continue;
        const auto* ahead =
            reinterpret_cast<const char*>(key_slice(pos + kPrefetchKeyBlocks * kKeyBlock));
        for (size_t b = 0; b < key_slice_bytes; b += 64) _mm_prefetch(ahead + b, _MM_HINT_T0);
      }
      for (int64_t r0 = 0; r0 < rows; r0 += kRowTile) {
        const int nr = static_cast<int>(min_i64(kRowTile, rows - r0));
        F scores[kDecodeGroups * kRowTile];
        score_groups<V, kDecodeGroups>(ng, nr, q_tiles + r0 * head_dim, kt, ks, head_dim, scores);
        for (int g = 0; g < ng; ++g) {
          for (int r = 0; r < nr; ++r) {
            V::store(sc + (r0 + r) * padded + (j + g * L - group_begin),
                     V::mul(scores[g * kRowTile + r], score_scale));
          }
        }
      }
      j += ng * L;
    }
    for (int64_t row = 0; row < rows; ++row) {
      float* s_row = sc + row * padded;
      // Keys outside the chunk (the first and last groups' other keys) weigh nothing.
      for (int64_t i = 0; i < lead; ++i) s_row[i] = -INFINITY;
      for (int64_t i = lead + n; i < padded; ++i) s_row[i] = -INFINITY;
      F vmax = V::set1(-INFINITY);
      for (int64_t i = 0; i < padded; i += L) vmax = V::max(vmax, V::load(s_row + i));
      const float m = V::hmax(vmax);
      const F vm = V::set1(m);
      F lane_sums = V::zero();
      for (int64_t i = 0; i < padded; i += L) {
        V::store(s_row + i, exp_approx<V>(V::sub(V::load(s_row + i), vm)));
        // exp_approx clamps its argument, so masked keys come out tiny, not 0: zero them.
        if (i < lead) {
          for (int64_t t = i; t < lead; ++t) s_row[t] = 0.0f;
        }
        if (i + L > lead + n) {
          for (int64_t t = lead + n; t < i + L; ++t) s_row[t] = 0.0f;
        }
        lane_sums = V::add(lane_sums, V::load(s_row + i));
      }
      row_max[row] = m;
      row_sum[row] = V::hsum(lane_sums);
    }
    const TV* v_chunk = v_head + key_begin * v_stride;
    for (int64_t r0 = 0; r0 < rows; r0 += 4) {
      const int nr = static_cast<int>(min_i64(4, rows - r0));
      const float* p_rows[4];
      float* acc_rows[4];
      for (int r = 0; r < nr; ++r) {
        p_rows[r] = sc + (r0 + r) * padded + lead;
        acc_rows[r] = acc + (r0 + r) * head_dim;
      }
      // The first pass streams the chunk's values from memory; later ones find them in L2.
      if (r0 == 0) {
        accumulate_value_rows<V, TV, true>(nr, p_rows, n, v_chunk, v_stride, head_dim, acc_rows);
      } else {
        accumulate_value_rows<V, TV>(nr, p_rows, n, v_chunk, v_stride, head_dim, acc_rows);
      }
    }
    return;
  }
  // Prefill takes kDecodeGroups key vectors per step as well: the per-row softmax bookkeeping
  // (horizontal max, rescale, exp) then serves twice the keys.
  constexpr int kSpan = kDecodeGroups * L;
  for (int64_t j = group_begin; j < item_end;) {
    const int ng = j + L < item_end ? kDecodeGroups : 1;
    const int n_keys = static_cast<int>(min_i64(ng * L, item_end - j));
    // Keys of the first vector before key_begin belong to the previous chunk.
    const int first = static_cast<int>(j < key_begin ? key_begin - j : 0);
    const TK* kt[kDecodeGroups];
    const uint16_t* ks[kDecodeGroups];
    for (int g = 0; g < ng; ++g) {
      kt[g] = keys_at(j + g * L);
      ks[g] = scales_at(j + g * L);
    }
    // Probabilities past a row's valid keys are 0, so a batch of rows runs to its longest
    // row's keys.
    const TV* v_block = v_head + j * v_stride;
    // Four rows per value pass: each value vector loaded once for 16 fmas.
    constexpr int kPvRows = 4;
    const float* pv_p[kPvRows];
    float* pv_acc[kPvRows];
    int n_pv = 0, pv_keys = 0;
    for (int64_t r0 = 0; r0 < rows; r0 += kRowTile) {
      const int nr = static_cast<int>(min_i64(kRowTile, rows - r0));
      F scores[kDecodeGroups * kRowTile];
      score_groups<V, kDecodeGroups>(ng, nr, q_tiles + r0 * head_dim, kt, ks, head_dim, scores);
      for (int r = 0; r < nr; ++r) {
        const int64_t row = r0 + r;
        const int64_t causal_end = shape.n_past + t_begin + row / group + 1;
        const int valid = static_cast<int>(min_i64(n_keys, causal_end - j));
        if (valid <= first) continue;  // these keys lie past the row's causal end
        float* p = probs + row * kSpan;
        F s[kDecodeGroups];
        for (int g = 0; g < ng; ++g) s[g] = V::mul(scores[g * kRowTile + r], score_scale);
        if (valid < ng * L || first > 0) {  // keys outside the row's range (or chunk): -inf
          for (int g = 0; g < ng; ++g) V::store(p + g * L, s[g]);
          for (int i = 0; i < first; ++i) p[i] = -INFINITY;
          for (int g = 0; g < ng; ++g) {
            const int in_vector = static_cast<int>(min_i64(L, max_i64(0, valid - g * L)));
            s[g] = V::load_partial_fill(p + g * L, in_vector, -INFINITY);
          }
        }
        F smax = s[0];
        for (int g = 1; g < ng; ++g) smax = V::max(smax, s[g]);
        const float old_max = row_max[row];
        const float block_max = V::hmax(smax);
        float* sr = sums + row * L;
        float* ar = acc + row * head_dim;
        F lane_sums = V::load(sr);
        if (block_max > old_max) {
          row_max[row] = block_max;
          if (old_max != -INFINITY) {
            const float shrink = expf(old_max - block_max);
            lane_sums = V::mul(lane_sums, V::set1(shrink));
            scale<V>(ar, shrink, head_dim);
          }
        }
        const F vm = V::set1(row_max[row]);
        for (int g = 0; g < ng; ++g) {
          F e = exp_approx<V>(V::sub(s[g], vm));
          if (g == 0 && first > 0) {  // exp_approx leaves the masked keys tiny, not 0
            V::store(p, e);
            for (int i = 0; i < first; ++i) p[i] = 0.0f;
            e = V::load(p);
          }
          lane_sums = V::add(lane_sums, e);
          V::store(p + g * L, e);
        }
        V::store(sr, lane_sums);
        // Rows that see these keys queue for the value pass, kPvRows at a time.
        pv_p[n_pv] = p;
        pv_acc[n_pv] = ar;
        pv_keys = valid > pv_keys ? valid : pv_keys;
        if (++n_pv == kPvRows) {
          accumulate_values<V, kPvRows>(pv_p, pv_keys, v_block, v_stride, head_dim, pv_acc);
          n_pv = 0;
          pv_keys = 0;
        }
      }
    }
    if (n_pv > 0) {
      accumulate_value_rows<V>(n_pv, pv_p, pv_keys, v_block, v_stride, head_dim, pv_acc);
    }
    j += ng * L;
  }
  for (int64_t r = 0; r < rows; ++r) row_sum[r] = V::hsum(V::load(sums + r * L));
}

// attention over a cache of key elements TK and value elements TV, as an AttentionKvFn.
template <class V, class TK, class TV>
void attention_kv(const float* q, const void* k, const void* v, const AttentionShape& shape,
                  int64_t kv_head, int64_t t_begin, int64_t t_end, int64_t key_begin,
                  int64_t key_end, float* acc, float* row_max, float* row_sum, float* scratch) {
  attention<V, TK, TV>(q, static_cast<const TK*>(k), static_cast<const TV*>(v), shape, kv_head,
                       t_begin, t_end, key_begin, key_end, acc, row_max, row_sum, scratch);
}

// The table for traits V.
template <class V>
constexpr KernelTable make_simd_table(const char* isa) {
  return KernelTable{
      isa,
      {matmul<V, WeightType::kF32>, matmul<V, WeightType::kF16>, matmul<V, WeightType::kBF16>},
      rms_norm<V>,
      layer_norm<V>,
      rope<V>,
      softmax<V>,
      silu<V>,
      silu_mul<V>,
      gelu_erf<V>,
      gelu_tanh<V>,
      gelu_quick<V>,
      add_scaled<V>,
      scale<V>,
      attention<V, float, float>,
      attention<V, uint16_t, uint16_t>,
      {{attention_kv<V, float, float>, attention_kv<V, float, uint16_t>,
        attention_kv<V, float, int8_t>},
       {attention_kv<V, uint16_t, float>, attention_kv<V, uint16_t, uint16_t>,
        attention_kv<V, uint16_t, int8_t>},
       {attention_kv<V, int8_t, float>, attention_kv<V, int8_t, uint16_t>,
        attention_kv<V, int8_t, int8_t>}},
      {ref::f32_to_f32, to_f32<V, WeightType::kF16>, to_f32<V, WeightType::kBF16>},
  };
}

}  // namespace
}  // namespace af::cpu
