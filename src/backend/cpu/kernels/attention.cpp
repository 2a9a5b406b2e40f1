// Reference causal grouped-query attention: one work item's softmax state (see AttentionFn).
#include <math.h>

#include "af/backend/key_cache.hpp"
#include "af/core/half.hpp"
#include "backend/cpu/kernels/reference.hpp"

namespace af::cpu::ref {

namespace {

double element(float x) { return double(x); }
double element(uint16_t h) { return double(af::f16_to_f32(h)); }

template <class T>
void attention_impl(const float* q, const T* k, const T* v, const AttentionShape& shape,
                    int64_t kv_head, int64_t t_begin, int64_t t_end, int64_t key_begin,
                    int64_t key_end, float* acc, float* row_max, float* row_sum, float* scratch) {
  const int64_t head_dim = shape.head_dim;
  const int64_t group = shape.n_heads / shape.n_kv_heads;
  const int64_t q_stride = shape.n_heads * head_dim;
  const int64_t kv_stride = shape.n_kv_heads * head_dim;
  const int64_t kv_off = kv_head * head_dim;
  for (int64_t t = t_begin; t < t_end; ++t) {
    const int64_t causal_end = shape.n_past + t + 1;  // keys 0 .. n_past + t
    const int64_t end = key_end < causal_end ? key_end : causal_end;
    for (int64_t i = 0; i < group; ++i) {
      const int64_t r = (t - t_begin) * group + i;
      const float* qh = q + t * q_stride + (kv_head * group + i) * head_dim;
      float* ar = acc + r * head_dim;
      float mx = -INFINITY;
      for (int64_t j = key_begin; j < end; ++j) {
        const T* kj = k + key_offset(j, kv_head, 0, shape.n_kv_heads, head_dim);
        double dot = 0.0;
        for (int64_t d = 0; d < head_dim; ++d) dot += double(qh[d]) * element(kj[d * kKeyBlock]);
        float& score = scratch[j - key_begin];
        score = static_cast<float>(dot * double(shape.scale));
        mx = score > mx ? score : mx;
      }
      double sum = 0.0;
      for (int64_t j = key_begin; j < end; ++j) {
        float& p = scratch[j - key_begin];
        p = static_cast<float>(exp(double(p) - double(mx)));
        sum += p;
      }
      for (int64_t d = 0; d < head_dim; ++d) {
        double a = 0.0;
        for (int64_t j = key_begin; j < end; ++j) {
          a += double(scratch[j - key_begin]) * element(v[j * kv_stride + kv_off + d]);
        }
        ar[d] = static_cast<float>(a);
      }
      row_max[r] = mx;
      row_sum[r] = static_cast<float>(sum);
    }
  }
}

}  // namespace

void attention(const float* q, const float* k, const float* v, const AttentionShape& shape,
               int64_t kv_head, int64_t t_begin, int64_t t_end, int64_t key_begin, int64_t key_end,
               float* acc, float* row_max, float* row_sum, float* scratch) {
  attention_impl(q, k, v, shape, kv_head, t_begin, t_end, key_begin, key_end, acc, row_max, row_sum,
                 scratch);
}

void attention_f16(const float* q, const uint16_t* k, const uint16_t* v,
                   const AttentionShape& shape, int64_t kv_head, int64_t t_begin, int64_t t_end,
                   int64_t key_begin, int64_t key_end, float* acc, float* row_max, float* row_sum,
                   float* scratch) {
  attention_impl(q, k, v, shape, kv_head, t_begin, t_end, key_begin, key_end, acc, row_max, row_sum,
                 scratch);
}

}  // namespace af::cpu::ref
