// Reference attention over plain rows (Backend::attention_rows): every score, softmax and
// weighted sum in double, so the oracle is more accurate than the float32 kernels it checks.
#include <math.h>

#include <vector>

#include "backend/cpu/kernels/reference.hpp"

namespace af::cpu::ref {

KeyRange attention_rows_keys(const AttentionMask& mask, int64_t n_kv, int64_t t) {
  switch (mask.kind) {
    case AttentionMaskKind::kCausal:
      return {0, mask.causal_offset + t + 1};
    case AttentionMaskKind::kBlocks: {
      // The last boundary <= t starts t's segment (boundaries strictly increase from 0).
      int64_t lo = 0, hi = mask.n_segments;  // t lies in segment [lo, hi)
      while (hi - lo > 1) {
        const int64_t mid = (lo + hi) / 2;
        if (mask.boundaries[mid] <= t) {
          lo = mid;
        } else {
          hi = mid;
        }
      }
      return {mask.boundaries[lo], mask.boundaries[lo + 1]};
    }
    case AttentionMaskKind::kNone:
      break;
  }
  return {0, n_kv};
}

void attention_rows(const float* q, int64_t q_stride, const float* k, int64_t k_stride,
                    const float* v, int64_t v_stride, int64_t n_q, int64_t n_kv, int64_t n_heads,
                    int64_t n_kv_heads, int64_t head_dim, float scale, const AttentionMask& mask,
                    float* out) {
  const int64_t group = n_heads / n_kv_heads;
  std::vector<double> p(static_cast<size_t>(n_kv));
  for (int64_t t = 0; t < n_q; ++t) {
    const KeyRange keys = attention_rows_keys(mask, n_kv, t);
    for (int64_t h = 0; h < n_heads; ++h) {
      const float* qh = q + t * q_stride + h * head_dim;
      const int64_t kv_off = h / group * head_dim;
      double mx = -INFINITY;
      for (int64_t j = keys.begin; j < keys.end; ++j) {
        const float* kj = k + j * k_stride + kv_off;
        double dot = 0.0;
        for (int64_t d = 0; d < head_dim; ++d) dot += double(qh[d]) * double(kj[d]);
        p[j] = dot * double(scale);
        mx = p[j] > mx ? p[j] : mx;
      }
      double sum = 0.0;
      for (int64_t j = keys.begin; j < keys.end; ++j) {
        p[j] = exp(p[j] - mx);
        sum += p[j];
      }
      float* o = out + t * n_heads * head_dim + h * head_dim;
      for (int64_t d = 0; d < head_dim; ++d) {
        double a = 0.0;
        for (int64_t j = keys.begin; j < keys.end; ++j) {
          a += p[j] * double(v[j * v_stride + kv_off + d]);
        }
        o[d] = static_cast<float>(a / sum);
      }
    }
  }
}

}  // namespace af::cpu::ref
