// Reference causal grouped-query attention.
#include <math.h>

#include "backend/cpu/kernels/reference.hpp"

namespace af::cpu::ref {

void attention(const float* q, const float* k, const float* v, int64_t n_tokens, int64_t n_past,
               int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float scale, float* out,
               int64_t task_begin, int64_t task_end, float* scratch) {
  (void)n_tokens;
  const int64_t group = n_heads / n_kv_heads;
  const int64_t q_stride = n_heads * head_dim;
  const int64_t kv_stride = n_kv_heads * head_dim;
  for (int64_t task = task_begin; task < task_end; ++task) {
    const int64_t t = task / n_heads;
    const int64_t h = task % n_heads;
    const int64_t n_ctx = n_past + t + 1;  // causal: keys 0 .. n_past + t
    const float* qh = q + t * q_stride + h * head_dim;
    const int64_t kv_off = (h / group) * head_dim;
    float mx = -INFINITY;
    for (int64_t j = 0; j < n_ctx; ++j) {
      const float* kj = k + j * kv_stride + kv_off;
      double dot = 0.0;
      for (int64_t d = 0; d < head_dim; ++d) dot += double(qh[d]) * double(kj[d]);
      scratch[j] = static_cast<float>(dot * double(scale));
      mx = scratch[j] > mx ? scratch[j] : mx;
    }
    double sum = 0.0;
    for (int64_t j = 0; j < n_ctx; ++j) {
      scratch[j] = expf(scratch[j] - mx);
      sum += scratch[j];
    }
    float* oh = out + t * q_stride + h * head_dim;
    for (int64_t d = 0; d < head_dim; ++d) {
      double acc = 0.0;
      for (int64_t j = 0; j < n_ctx; ++j) acc += double(scratch[j]) * v[j * kv_stride + kv_off + d];
      oh[d] = static_cast<float>(acc / sum);
    }
  }
}

}  // namespace af::cpu::ref
