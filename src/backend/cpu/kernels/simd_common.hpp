#pragma once
// Shared pieces of the SIMD kernels, written once over a vector-traits struct V that each ISA
// file (*_avx2.cpp, *_avx512.cpp) defines. Include ONLY from those files: everything here is
// compiled with that file's ISA flags, so it lives in an anonymous namespace (a per-file copy)
// and avoids inline std:: templates, whose out-of-line copies the linker could share with
// non-ISA code and so run ISA instructions on a CPU that lacks them.
//
// V provides: F (register type), kLanes, kTileRows/kTileCols (prefill matmul tile),
// kDecodeRows (weight rows per step at m == 1), zero, set1, load, load_partial,
// load_partial_fill, store, store_partial, load_f16(_partial), load_bf16(_partial), add, sub,
// mul, div, fmadd(a, b, c) = a * b + c, min, max, hsum, hmax, swap_pairs (lanes 0<->1, 2<->3,
// ...), transpose (of kLanes vectors in place, as a kLanes x kLanes matrix), round (to nearest
// even) and pow2i (2^n for integral n in [-127, 127], 0 at -127).
#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "simd_*.hpp must only be included from files compiled with ISA flags (*_avx2.cpp etc.)"
#endif

#include <math.h>

#include <cstdint>

#include "backend/cpu/kernels/kernel_table.hpp"

namespace af::cpu {
namespace {

inline int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t max_i64(int64_t a, int64_t b) { return a > b ? a : b; }

// exp(x) by Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, and the degree-7 Taylor
// polynomial of e^r, whose truncation error (< 1e-8 relative) is below float rounding; measured
// within 2 ulp of expf. Inputs below -88 give 0 (true results there are < 2^-126, subnormal) and
// above 88 are clamped, which only matters for overflow that softmax's max-subtraction rules out.
template <class V>
inline typename V::F exp_approx(typename V::F x) {
  using F = typename V::F;
  x = V::min(V::max(x, V::set1(-88.0f)), V::set1(88.0f));
  const F n = V::round(V::mul(x, V::set1(1.44269504088896341f)));
  F r = V::fmadd(n, V::set1(-0.693359375f), x);  // ln2 split in two so n * ln2 is exact-ish
  r = V::fmadd(n, V::set1(2.12194440e-4f), r);
  F p = V::set1(1.0f / 5040.0f);
  p = V::fmadd(p, r, V::set1(1.0f / 720.0f));
  p = V::fmadd(p, r, V::set1(1.0f / 120.0f));
  p = V::fmadd(p, r, V::set1(1.0f / 24.0f));
  p = V::fmadd(p, r, V::set1(1.0f / 6.0f));
  p = V::fmadd(p, r, V::set1(0.5f));
  p = V::fmadd(p, r, V::set1(1.0f));
  p = V::fmadd(p, r, V::set1(1.0f));
  return V::mul(p, V::pow2i(n));
}

// x[0..k) · y[0..k), lane-wise partial sums reduced once at the end.
template <class V>
inline float dot(const float* x, const float* y, int64_t k) {
  typename V::F acc = V::zero();
  int64_t i = 0;
  for (; i + V::kLanes <= k; i += V::kLanes) acc = V::fmadd(V::load(x + i), V::load(y + i), acc);
  if (i < k) {
    const int rem = static_cast<int>(k - i);
    acc = V::fmadd(V::load_partial(x + i, rem), V::load_partial(y + i, rem), acc);
  }
  return V::hsum(acc);
}

// Softmax of one row x[n] in place; padded lanes load as -inf so they add exp(-inf) = 0.
template <class V>
inline void softmax_row(float* x, int64_t n) {
  using F = typename V::F;
  constexpr int L = V::kLanes;
  const int64_t nv = n - n % L;
  const int rem = static_cast<int>(n - nv);
  F vmax = V::set1(-INFINITY);
  for (int64_t i = 0; i < nv; i += L) vmax = V::max(vmax, V::load(x + i));
  if (rem) vmax = V::max(vmax, V::load_partial_fill(x + nv, rem, -INFINITY));
  const F mx = V::set1(V::hmax(vmax));
  F vsum = V::zero();
  for (int64_t i = 0; i < nv; i += L) {
    const F e = exp_approx<V>(V::sub(V::load(x + i), mx));
    V::store(x + i, e);
    vsum = V::add(vsum, e);
  }
  if (rem) {
    const F e = exp_approx<V>(V::sub(V::load_partial_fill(x + nv, rem, -INFINITY), mx));
    V::store_partial(x + nv, e, rem);
    vsum = V::add(vsum, e);
  }
  const F inv = V::set1(1.0f / V::hsum(vsum));
  for (int64_t i = 0; i < nv; i += L) V::store(x + i, V::mul(V::load(x + i), inv));
  if (rem) V::store_partial(x + nv, V::mul(V::load_partial(x + nv, rem), inv), rem);
}

// Applies op(F) -> F to x[n] in place, the tail through partial loads so every element sees
// the same arithmetic whatever range a thread was given.
template <class V, class Op>
inline void map_inplace(float* x, int64_t n, Op op) {
  int64_t i = 0;
  for (; i + V::kLanes <= n; i += V::kLanes) V::store(x + i, op(V::load(x + i)));
  if (i < n) {
    const int rem = static_cast<int>(n - i);
    V::store_partial(x + i, op(V::load_partial(x + i, rem)), rem);
  }
}

}  // namespace
}  // namespace af::cpu
