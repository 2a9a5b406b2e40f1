#include "af/nn/attention.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "af/backend/key_cache.hpp"
#include "af/core/error.hpp"
#include "af/core/half.hpp"

namespace af::nn {

namespace {
constexpr int64_t kPageBytes = 4096;

// Copies the keys of `count` positions from src (positions src_pos..) to dst (dst_pos..), both
// key caches of element type `type` in the blocked layout of key_cache.hpp; bytes as stored.
void copy_keys(DType type, const void* src, int64_t src_pos, void* dst, int64_t dst_pos,
               int64_t count, int64_t n_kv_heads, int64_t head_dim) {
  const auto* s = static_cast<const uint8_t*>(src);
  auto* d = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t sp = src_pos + i, dp = dst_pos + i;
    if (type == DType::Q8_0) {
      for (int64_t h = 0; h < n_kv_heads; ++h) {
        const uint8_t* from = s + q8_key_slice_offset(sp, h, n_kv_heads, head_dim);
        uint8_t* to = d + q8_key_slice_offset(dp, h, n_kv_heads, head_dim);
        for (int64_t e = 0; e < head_dim; ++e)
          to[e * kKeyBlock + dp % kKeyBlock] = from[e * kKeyBlock + sp % kKeyBlock];
        for (int64_t b = 0; b < q8_blocks(head_dim); ++b) {
          std::memcpy(to + kKeyBlock * head_dim + 2 * (b * kKeyBlock + dp % kKeyBlock),
                      from + kKeyBlock * head_dim + 2 * (b * kKeyBlock + sp % kKeyBlock), 2);
        }
      }
      continue;
    }
    const size_t es = type == DType::F16 ? 2 : 4;
    const int64_t s0 = key_block_offset(sp, 0, n_kv_heads, head_dim) + sp % kKeyBlock;
    const int64_t d0 = key_block_offset(dp, 0, n_kv_heads, head_dim) + dp % kKeyBlock;
    for (int64_t c = 0; c < n_kv_heads * head_dim; ++c) {
      std::memcpy(d + static_cast<size_t>(d0 + c * kKeyBlock) * es,
                  s + static_cast<size_t>(s0 + c * kKeyBlock) * es, es);
    }
  }
}

// Per-thread room for a sliding-window chunk: its visible keys and values laid out linearly.
struct WindowScratch {
  std::vector<uint8_t> keys, values, window_keys;
};
WindowScratch& window_scratch() {
  thread_local WindowScratch scratch;
  return scratch;
}

// A sliding-window segment once its window has filled (attend_cached).
void attend_window(Backend& be, const SelfAttention::Segment& seg, const float* q,
                   const float* keys, const float* values, int64_t n_heads, int64_t n_kv_heads,
                   int64_t head_dim, float scale, float* out) {
  const int64_t w = seg.window, n = seg.n, past = seg.n_past, q_dim = n_heads * head_dim;
  const int64_t kv_dim = n_kv_heads * head_dim;
  const int64_t v_row = value_row_bytes(seg.v_type, n_kv_heads, head_dim);
  auto* ring_v = static_cast<uint8_t*>(seg.v_cache);
  // Stores positions [first, past + n) of the new rows into their ring rows.
  const auto store_ring = [&](int64_t first) {
    for (int64_t pos = first; pos < past + n; ++pos) {
      store_keys_as(seg.k_type, seg.k_cache, keys + (pos - past) * kv_dim, 1, pos % w, n_kv_heads,
                    head_dim);
      store_values_as(seg.v_type, seg.v_cache, values + (pos - past) * kv_dim, 1, pos % w,
                      n_kv_heads, head_dim);
    }
  };
  if (n == 1) {
    // Decode past the window: after the store the ring holds exactly the w visible keys (their
    // order does not matter to softmax-weighted sums).
    store_ring(past);
    be.attention_kv(q, {seg.k_cache, seg.v_cache, seg.k_type, seg.v_type}, 1, w - 1, n_heads,
                    n_kv_heads, head_dim, scale, out);
    return;
  }
  // A chunk: lay out the last w - 1 cached positions and the new ones linearly (positions
  // first.. at rows 0..), since the new rows overwrite ring rows its first queries still see.
  const int64_t first = std::max<int64_t>(0, past - (w - 1)), old = past - first;
  WindowScratch& ws = window_scratch();
  ws.keys.resize(static_cast<size_t>(key_cache_bytes(seg.k_type, old + n, n_kv_heads, head_dim)));
  ws.values.resize(static_cast<size_t>((old + n) * v_row));
  for (int64_t i = 0; i < old; ++i) {
    const int64_t row = (first + i) % w;
    copy_keys(seg.k_type, seg.k_cache, row, ws.keys.data(), i, 1, n_kv_heads, head_dim);
    std::memcpy(ws.values.data() + i * v_row, ring_v + row * v_row, static_cast<size_t>(v_row));
  }
  store_keys_as(seg.k_type, ws.keys.data(), keys, n, old, n_kv_heads, head_dim);
  store_values_as(seg.v_type, ws.values.data(), values, n, old, n_kv_heads, head_dim);
  // Queries whose window starts at row 0 run as one causal block.
  const int64_t head = std::min(n, w - old);
  be.attention_kv(q, {ws.keys.data(), ws.values.data(), seg.k_type, seg.v_type}, head, old, n_heads,
                  n_kv_heads, head_dim, scale, out);
  // The others see rows lo .. lo + w - 1: in place when lo starts a key block, else copied.
  for (int64_t t = head; t < n; ++t) {
    const int64_t lo = old + t - (w - 1);
    const void* k = ws.keys.data() + key_cache_bytes(seg.k_type, lo, n_kv_heads, head_dim);
    if (lo % kKeyBlock != 0) {
      ws.window_keys.resize(
          static_cast<size_t>(key_cache_bytes(seg.k_type, w, n_kv_heads, head_dim)));
      copy_keys(seg.k_type, ws.keys.data(), lo, ws.window_keys.data(), 0, w, n_kv_heads, head_dim);
      k = ws.window_keys.data();
    }
    be.attention_kv(q + t * q_dim, {k, ws.values.data() + lo * v_row, seg.k_type, seg.v_type}, 1,
                    w - 1, n_heads, n_kv_heads, head_dim, scale, out + t * q_dim);
  }
  store_ring(std::max(past, past + n - w));
}
}  // namespace

void attend_cached(Backend& be, const SelfAttention::Segment& seg, const float* q,
                   const float* keys, const float* values, int64_t n_heads, int64_t n_kv_heads,
                   int64_t head_dim, float scale, float* out) {
  // Until the window first fills, ring rows are positions and every key is visible.
  if (seg.window > 0 && seg.n_past + seg.n > seg.window) {
    attend_window(be, seg, q, keys, values, n_heads, n_kv_heads, head_dim, scale, out);
    return;
  }
  store_keys_as(seg.k_type, seg.k_cache, keys, seg.n, seg.n_past, n_kv_heads, head_dim);
  store_values_as(seg.v_type, seg.v_cache, values, seg.n, seg.n_past, n_kv_heads, head_dim);
  be.attention_kv(q, {seg.k_cache, seg.v_cache, seg.k_type, seg.v_type}, seg.n, seg.n_past, n_heads,
                  n_kv_heads, head_dim, scale, out);
}

void KvCache::Free::operator()(void* p) const { std::free(p); }

int64_t KvCache::bytes_per_position(DType k_type, DType v_type, int64_t n_kv_heads,
                                    int64_t head_dim) {
  // A whole key block's bytes over its kKeyBlock positions (exact: every layout is per block).
  return key_cache_bytes(k_type, kKeyBlock, n_kv_heads, head_dim) / kKeyBlock +
         value_row_bytes(v_type, n_kv_heads, head_dim);
}

int64_t KvCache::bytes_per_position() const {
  return bytes_per_position(k_type_, v_type_, n_kv_heads_, head_dim_);
}

KvCache::KvCache(int64_t n_layers, int64_t max_seq, int64_t n_kv_heads, int64_t head_dim,
                 DType type)
    : KvCache(n_layers, max_seq, n_kv_heads, head_dim, type, type) {}

KvCache::KvCache(int64_t n_layers, int64_t max_seq, int64_t n_kv_heads, int64_t head_dim,
                 DType k_type, DType v_type)
    : max_seq_(max_seq),
      n_kv_heads_(n_kv_heads),
      head_dim_(head_dim),
      k_type_(k_type),
      v_type_(v_type) {
  for (auto [side, type] : {std::pair{"keys", k_type}, std::pair{"values", v_type}}) {
    AF_CHECK(is_kv_cache_type(type), ErrorCode::kInvalidArgument, "kv_cache", "KV cache type ",
             name(type), " for the ", side, " is not supported (f32, f16, q8_0)");
  }
  // The byte counts below are at most 4 bytes per element (q8_0: 34 per 32, plus a key block's
  // 16 x 2 scale bytes per 32 dimensions), so bounding max_seq x kv_dim x 8 keeps them exact.
  int64_t kv_dim = 0, elements = 0;
  const bool sizes_ok = n_layers >= 0 && max_seq >= 0 && n_kv_heads >= 0 && head_dim >= 0 &&
                        max_seq <= INT64_MAX - kKeyBlock &&
                        checked_mul(n_kv_heads, head_dim, &kv_dim) &&
                        checked_mul(max_seq + kKeyBlock, kv_dim + kKvQ8Block, &elements) &&
                        elements <= (INT64_MAX - kPageBytes) / 8;
  AF_CHECK(sizes_ok, ErrorCode::kInvalidArgument, "kv_cache", "invalid size ", n_layers, " x ",
           max_seq, " x ", n_kv_heads, " x ", head_dim);
  const int64_t k_bytes = key_cache_bytes(k_type, max_seq, n_kv_heads, head_dim);
  const int64_t v_bytes = max_seq * value_row_bytes(v_type, n_kv_heads, head_dim);
  for (int64_t l = 0; l < n_layers; ++l) {
    for (auto [side, count] : {std::pair{&k_, k_bytes}, std::pair{&v_, v_bytes}}) {
      // A page more than asked for, to start the array on a page boundary.
      const auto bytes = static_cast<size_t>(count) + kPageBytes;
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
  if (!q_norm.weight.empty()) q_norm.forward(be, q, rows * n_heads, q);
  if (!k_norm.weight.empty()) k_norm.forward(be, k_new, rows * n_kv_heads, k_new);
  rope.apply(be, q, rows, n_heads, positions);
  rope.apply(be, k_new, rows, n_kv_heads, positions);
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  for (int64_t s = 0; s < n_segments; ++s) {
    const Segment& seg = segments[s];
    attend_cached(be, seg, q + seg.row_begin * q_dim, k_new + seg.row_begin * kv_dim,
                  v_new + seg.row_begin * kv_dim, n_heads, n_kv_heads, head_dim, scale,
                  attn + seg.row_begin * q_dim);
  }
  o_proj.forward(be, attn, rows, y);
}

}  // namespace af::nn
