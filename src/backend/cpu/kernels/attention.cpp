// Reference causal grouped-query attention: one work item's softmax state (see AttentionFn).
#include <math.h>

#include "af/backend/key_cache.hpp"
#include "af/core/half.hpp"
#include "backend/cpu/kernels/reference.hpp"

namespace af::cpu::ref {

namespace {

// Element reads of a cache of element type K (keys) / VT (values), as every kernel sees them.
template <DType K>
double key_at(const void* k, int64_t j, int64_t h, int64_t d, const AttentionShape& s) {
  return double(cached_key(k, K, j, h, d, s.n_kv_heads, s.head_dim));
}
template <DType VT>
double value_at(const void* v, int64_t j, int64_t h, int64_t d, const AttentionShape& s) {
  return double(cached_value(v, VT, j, h, d, s.n_kv_heads, s.head_dim));
}

template <DType K, DType VT>
void attention_impl(const float* q, const void* k, const void* v, const AttentionShape& shape,
                    int64_t kv_head, int64_t t_begin, int64_t t_end, int64_t key_begin,
                    int64_t key_end, float* acc, float* row_max, float* row_sum, float* scratch) {
  const int64_t head_dim = shape.head_dim;
  const int64_t group = shape.n_heads / shape.n_kv_heads;
  const int64_t q_stride = shape.n_heads * head_dim;
  for (int64_t t = t_begin; t < t_end; ++t) {
    const int64_t causal_end = shape.n_past + t + 1;  // keys 0 .. n_past + t
    const int64_t end = key_end < causal_end ? key_end : causal_end;
    for (int64_t i = 0; i < group; ++i) {
      const int64_t r = (t - t_begin) * group + i;
      const float* qh = q + t * q_stride + (kv_head * group + i) * head_dim;
      float* ar = acc + r * head_dim;
      float mx = -INFINITY;
      for (int64_t j = key_begin; j < end; ++j) {
        double dot = 0.0;
        for (int64_t d = 0; d < head_dim; ++d) {
          dot += double(qh[d]) * key_at<K>(k, j, kv_head, d, shape);
        }
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
          a += double(scratch[j - key_begin]) * value_at<VT>(v, j, kv_head, d, shape);
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
  attention_impl<DType::F32, DType::F32>(q, k, v, shape, kv_head, t_begin, t_end, key_begin,
                                         key_end, acc, row_max, row_sum, scratch);
}

void attention_f16(const float* q, const uint16_t* k, const uint16_t* v,
                   const AttentionShape& shape, int64_t kv_head, int64_t t_begin, int64_t t_end,
                   int64_t key_begin, int64_t key_end, float* acc, float* row_max, float* row_sum,
                   float* scratch) {
  attention_impl<DType::F16, DType::F16>(q, k, v, shape, kv_head, t_begin, t_end, key_begin,
                                         key_end, acc, row_max, row_sum, scratch);
}

template <DType K, DType VT>
void attention_kv(const float* q, const void* k, const void* v, const AttentionShape& shape,
                  int64_t kv_head, int64_t t_begin, int64_t t_end, int64_t key_begin,
                  int64_t key_end, float* acc, float* row_max, float* row_sum, float* scratch) {
  attention_impl<K, VT>(q, k, v, shape, kv_head, t_begin, t_end, key_begin, key_end, acc, row_max,
                        row_sum, scratch);
}

#define AF_REF_ATTENTION_KV(K, VT)                                                              \
  template void attention_kv<DType::K, DType::VT>(                                              \
      const float*, const void*, const void*, const AttentionShape&, int64_t, int64_t, int64_t, \
      int64_t, int64_t, float*, float*, float*, float*);
AF_REF_ATTENTION_KV(F32, F32)
AF_REF_ATTENTION_KV(F32, F16)
AF_REF_ATTENTION_KV(F32, Q8_0)
AF_REF_ATTENTION_KV(F16, F32)
AF_REF_ATTENTION_KV(F16, F16)
AF_REF_ATTENTION_KV(F16, Q8_0)
AF_REF_ATTENTION_KV(Q8_0, F32)
AF_REF_ATTENTION_KV(Q8_0, F16)
AF_REF_ATTENTION_KV(Q8_0, Q8_0)
#undef AF_REF_ATTENTION_KV

}  // namespace af::cpu::ref
