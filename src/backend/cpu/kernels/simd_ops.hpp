#pragma once
// Norms, RoPE, softmax, activations and attention over vector traits V, plus the KernelTable
// that collects them (include only from ISA files; see simd_common.hpp).
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

// See AttentionFn in kernel_table.hpp for shapes. scratch[n_past + n_tokens] holds one task's
// scores, then its probabilities.
template <class V>
void attention(const float* q, const float* k, const float* v, int64_t n_tokens, int64_t n_past,
               int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float scale, float* out,
               int64_t task_begin, int64_t task_end, float* scratch) {
  using F = typename V::F;
  constexpr int L = V::kLanes;
  (void)n_tokens;
  const int64_t group = n_heads / n_kv_heads;
  const int64_t q_stride = n_heads * head_dim;
  const int64_t kv_stride = n_kv_heads * head_dim;
  for (int64_t task = task_begin; task < task_end; ++task) {
    const int64_t t = task / n_heads;
    const int64_t h = task % n_heads;
    const int64_t n_ctx = n_past + t + 1;  // causal: keys 0 .. n_past + t
    const float* qh = q + t * q_stride + h * head_dim;
    const float* kh = k + (h / group) * head_dim;
    const float* vh = v + (h / group) * head_dim;
    for (int64_t j = 0; j < n_ctx; ++j)
      scratch[j] = dot<V>(qh, kh + j * kv_stride, head_dim) * scale;
    softmax_row<V>(scratch, n_ctx);
    float* oh = out + t * q_stride + h * head_dim;
    int64_t d = 0;
    // Four output vectors stay in registers while all n_ctx value rows stream past.
    for (; d + 4 * L <= head_dim; d += 4 * L) {
      F a0 = V::zero(), a1 = V::zero(), a2 = V::zero(), a3 = V::zero();
      for (int64_t j = 0; j < n_ctx; ++j) {
        const F p = V::set1(scratch[j]);
        const float* vj = vh + j * kv_stride + d;
        a0 = V::fmadd(p, V::load(vj), a0);
        a1 = V::fmadd(p, V::load(vj + L), a1);
        a2 = V::fmadd(p, V::load(vj + 2 * L), a2);
        a3 = V::fmadd(p, V::load(vj + 3 * L), a3);
      }
      V::store(oh + d, a0);
      V::store(oh + d + L, a1);
      V::store(oh + d + 2 * L, a2);
      V::store(oh + d + 3 * L, a3);
    }
    for (; d < head_dim; d += L) {
      const int cnt = static_cast<int>(min_i64(L, head_dim - d));
      F a = V::zero();
      for (int64_t j = 0; j < n_ctx; ++j) {
        const float* vj = vh + j * kv_stride + d;
        a = V::fmadd(V::set1(scratch[j]), cnt == L ? V::load(vj) : V::load_partial(vj, cnt), a);
      }
      if (cnt == L) {
        V::store(oh + d, a);
      } else {
        V::store_partial(oh + d, a, cnt);
      }
    }
  }
}

// The table for traits V. gelu with erf stays scalar (erff per element): accurate and rare in
// the decoder models this library targets, so a SIMD erf is not worth its error analysis yet.
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
      ref::gelu_erf,
      gelu_tanh<V>,
      add_scaled<V>,
      scale<V>,
      attention<V>,
      {ref::f32_to_f32, to_f32<V, WeightType::kF16>, to_f32<V, WeightType::kBF16>},
  };
}

}  // namespace
}  // namespace af::cpu
