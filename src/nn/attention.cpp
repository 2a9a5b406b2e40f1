#include "af/nn/attention.hpp"

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "af/core/error.hpp"

namespace af::nn {

void KvCache::Free::operator()(float* p) const { std::free(p); }

KvCache::KvCache(int64_t n_layers, int64_t max_seq, int64_t kv_dim)
    : max_seq_(max_seq), kv_dim_(kv_dim) {
  int64_t count = 0;
  AF_CHECK(n_layers >= 0 && checked_mul(max_seq, kv_dim, &count), ErrorCode::kInvalidArgument,
           "kv_cache", "invalid size ", n_layers, " x ", max_seq, " x ", kv_dim);
  for (int64_t l = 0; l < n_layers; ++l) {
    for (auto* side : {&k_, &v_}) {
      auto* p = static_cast<float*>(std::calloc(static_cast<size_t>(count), sizeof(float)));
      AF_CHECK(p != nullptr || count == 0, ErrorCode::kIo, "kv_cache", "cannot allocate ",
               count * 4, " bytes for layer ", l);
      side->emplace_back(p);
    }
  }
}

SelfAttention SelfAttention::load(const VarBuilder& vb, int64_t hidden, int64_t n_heads,
                                  int64_t n_kv_heads, int64_t head_dim, bool qkv_bias,
                                  bool o_bias) {
  AF_CHECK(n_heads > 0 && n_kv_heads > 0 && n_heads % n_kv_heads == 0, ErrorCode::kFormat,
           "attention", vb.path("*"), ": ", n_heads, " heads cannot share ", n_kv_heads,
           " KV heads");
  SelfAttention a;
  a.n_heads = n_heads;
  a.n_kv_heads = n_kv_heads;
  a.head_dim = head_dim;
  a.q_proj = Linear::load(vb.sub("q_proj"), hidden, n_heads * head_dim, qkv_bias);
  a.k_proj = Linear::load(vb.sub("k_proj"), hidden, n_kv_heads * head_dim, qkv_bias);
  a.v_proj = Linear::load(vb.sub("v_proj"), hidden, n_kv_heads * head_dim, qkv_bias);
  a.o_proj = Linear::load(vb.sub("o_proj"), n_heads * head_dim, hidden, o_bias);
  return a;
}

void SelfAttention::prepare(Backend& be) {
  for (Linear* l : {&q_proj, &k_proj, &v_proj, &o_proj}) l->prepare(be);
}

void SelfAttention::forward_batch(Backend& be, const Rope& rope, const Segment* segments,
                                  int64_t n_segments, const float* x, int64_t rows,
                                  const int32_t* positions, float* scratch, float* y) const {
  const int64_t q_dim = n_heads * head_dim;
  const int64_t kv_dim = n_kv_heads * head_dim;
  float* q = scratch;                    // [rows, q_dim]
  float* attn = q + rows * q_dim;        // [rows, q_dim]
  float* k_new = attn + rows * q_dim;    // [rows, kv_dim]
  float* v_new = k_new + rows * kv_dim;  // [rows, kv_dim]
  const Backend::MatmulTarget qkv[] = {q_proj.target(q), k_proj.target(k_new),
                                       v_proj.target(v_new)};
  be.matmul_group(x, rows, qkv, 3);
  rope.apply(be, q, rows, n_heads, positions);
  rope.apply(be, k_new, rows, n_kv_heads, positions);
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  for (int64_t s = 0; s < n_segments; ++s) {
    const Segment& seg = segments[s];
    const size_t bytes = static_cast<size_t>(seg.n * kv_dim) * sizeof(float);
    std::memcpy(seg.k_cache + seg.n_past * kv_dim, k_new + seg.row_begin * kv_dim, bytes);
    std::memcpy(seg.v_cache + seg.n_past * kv_dim, v_new + seg.row_begin * kv_dim, bytes);
    be.attention(q + seg.row_begin * q_dim, seg.k_cache, seg.v_cache, seg.n, seg.n_past, n_heads,
                 n_kv_heads, head_dim, scale, attn + seg.row_begin * q_dim);
  }
  o_proj.forward(be, attn, rows, y);
}

}  // namespace af::nn
