#include "af/nn/attention.hpp"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "af/backend/key_cache.hpp"
#include "af/core/error.hpp"
#include "af/core/half.hpp"

namespace af::nn {

namespace {
constexpr int64_t kPageBytes = 4096;
}  // namespace

void KvCache::Free::operator()(void* p) const { std::free(p); }

int64_t KvCache::bytes_per_position() const { return 2 * kv_dim() * (type_ == DType::F16 ? 2 : 4); }

KvCache::KvCache(int64_t n_layers, int64_t max_seq, int64_t n_kv_heads, int64_t head_dim,
                 DType type)
    : max_seq_(max_seq), n_kv_heads_(n_kv_heads), head_dim_(head_dim), type_(type) {
  AF_CHECK(type == DType::F32 || type == DType::F16, ErrorCode::kInvalidArgument, "kv_cache",
           "KV cache type ", name(type), " is not supported (f32, f16)");
  const int64_t element = type == DType::F16 ? 2 : 4;
  int64_t kv_dim = 0, v_count = 0, k_count = 0;
  // Whole key blocks: max_seq rounded up to kKeyBlock (checked before the rounding can overflow).
  const bool sizes_ok =
      n_layers >= 0 && max_seq >= 0 && n_kv_heads >= 0 && head_dim >= 0 &&
      max_seq <= INT64_MAX - kKeyBlock && checked_mul(n_kv_heads, head_dim, &kv_dim) &&
      checked_mul(max_seq, kv_dim, &v_count) &&
      checked_mul((max_seq + kKeyBlock - 1) / kKeyBlock * kKeyBlock, kv_dim, &k_count) &&
      k_count <= (INT64_MAX - kPageBytes) / element;
  AF_CHECK(sizes_ok, ErrorCode::kInvalidArgument, "kv_cache", "invalid size ", n_layers, " x ",
           max_seq, " x ", n_kv_heads, " x ", head_dim);
  for (int64_t l = 0; l < n_layers; ++l) {
    for (auto [side, count] : {std::pair{&k_, k_count}, std::pair{&v_, v_count}}) {
      // A page more than asked for, to start the array on a page boundary.
      const auto bytes = static_cast<size_t>(count * element) + kPageBytes;
      void* p = count > 0 ? std::calloc(bytes, 1) : nullptr;
      AF_CHECK(p != nullptr || count == 0, ErrorCode::kIo, "kv_cache", "cannot allocate ", bytes,
               " bytes for layer ", l);
      const auto addr = reinterpret_cast<uintptr_t>(p);
      const auto skip = static_cast<size_t>((kPageBytes - addr % kPageBytes) % kPageBytes);
      side->push_back({std::unique_ptr<void, Free>(p),
                       p ? static_cast<void*>(static_cast<char*>(p) + skip) : nullptr});
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
                                  const int32_t* positions, float* scratch, float* y,
                                  const RmsNorm* pre_norm) const {
  const int64_t q_dim = n_heads * head_dim;
  const int64_t kv_dim = n_kv_heads * head_dim;
  float* q = scratch;                    // [rows, q_dim]
  float* attn = q + rows * q_dim;        // [rows, q_dim]
  float* k_new = attn + rows * q_dim;    // [rows, kv_dim]
  float* v_new = k_new + rows * kv_dim;  // [rows, kv_dim]
  const Backend::MatmulTarget qkv[] = {q_proj.target(q), k_proj.target(k_new),
                                       v_proj.target(v_new)};
  matmul_group_after_norm(be, pre_norm, x, rows, y, qkv, 3, "SelfAttention::forward_batch");
  rope.apply(be, q, rows, n_heads, positions);
  rope.apply(be, k_new, rows, n_kv_heads, positions);
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  for (int64_t s = 0; s < n_segments; ++s) {
    const Segment& seg = segments[s];
    const float* keys = k_new + seg.row_begin * kv_dim;
    const float* values = v_new + seg.row_begin * kv_dim;
    if (seg.kv_type == DType::F16) {
      auto* k_cache = static_cast<uint16_t*>(seg.k_cache);
      auto* v_cache = static_cast<uint16_t*>(seg.v_cache) + seg.n_past * kv_dim;
      store_keys(k_cache, keys, seg.n, seg.n_past, n_kv_heads, head_dim);
      for (int64_t i = 0; i < seg.n * kv_dim; ++i) v_cache[i] = f32_to_f16(values[i]);
      be.attention_f16(q + seg.row_begin * q_dim, k_cache, static_cast<uint16_t*>(seg.v_cache),
                       seg.n, seg.n_past, n_heads, n_kv_heads, head_dim, scale,
                       attn + seg.row_begin * q_dim);
      continue;
    }
    auto* k_cache = static_cast<float*>(seg.k_cache);
    auto* v_cache = static_cast<float*>(seg.v_cache);
    store_keys(k_cache, keys, seg.n, seg.n_past, n_kv_heads, head_dim);
    std::memcpy(v_cache + seg.n_past * kv_dim, values,
                static_cast<size_t>(seg.n * kv_dim) * sizeof(float));
    be.attention(q + seg.row_begin * q_dim, k_cache, v_cache, seg.n, seg.n_past, n_heads,
                 n_kv_heads, head_dim, scale, attn + seg.row_begin * q_dim);
  }
  o_proj.forward(be, attn, rows, y);
}

}  // namespace af::nn
