#include "backend/cpu/kernels/attention_plan.hpp"

#include <math.h>

#include <numeric>
#include <vector>

#include "af/backend/key_cache.hpp"
#include "backend/cpu/backend_util.hpp"

namespace af::cpu {
namespace {

// Rows (query token x query head of one KV head) an item aims for: enough to amortise each key
// block's load, few enough that the accumulators stay in L1/L2.
constexpr int64_t kAttentionRows = 48;
constexpr int64_t kMaxAttentionRows = 64;
// Fewer items than this (KV heads x token blocks) and the keys are split too.
constexpr int64_t kMinItems = 8;
// Key chunks are at least this many keys (shorter ones cost more to merge and start than they
// save), and a multiple of kKeyBlock keys so every chunk starts at a key cache block.
constexpr int64_t kMinKeyChunk = 128;
// The widest vector (AVX-512) in floats; the SIMD kernels' scratch is sized for it.
constexpr int64_t kMaxLanes = 16;

}  // namespace

int64_t AttentionPlan::scratch_floats() const {
  // SIMD: the query rows in tiles of kAttentionRowTile, per row two vectors of probabilities and
  // a vector of lane-wise sums, and for decode each row's scores over the chunk, from the vector
  // that holds its first key. Reference: one row's scores over the chunk.
  int64_t simd = ceil_div(rows_per_item(), kAttentionRowTile) * kAttentionRowTile * shape.head_dim +
                 3 * rows_per_item() * kMaxLanes;
  // Decode (one query token) scores its whole key chunk first: rows x chunk scores.
  if (shape.n_tokens == 1) {
    simd += rows_per_item() * (ceil_div(key_chunk + kMaxLanes - 1, kMaxLanes) * kMaxLanes);
  }
  return simd > key_chunk ? simd : key_chunk;
}

AttentionPlan plan_attention(const AttentionShape& shape, int64_t token_block, int64_t key_chunk) {
  AttentionPlan plan;
  plan.shape = shape;
  plan.group = shape.n_heads / shape.n_kv_heads;
  plan.token_block = token_block;
  plan.key_chunk = key_chunk;
  plan.n_token_blocks = ceil_div(shape.n_tokens, token_block);
  plan.n_key_chunks = ceil_div(shape.n_past + shape.n_tokens, key_chunk);
  return plan;
}

AttentionPlan plan_attention(const AttentionShape& shape) {
  const int64_t group = shape.n_heads / shape.n_kv_heads;
  // Whole row tiles where the group allows: rows a multiple of lcm(group, kAttentionRowTile),
  // up to kMaxAttentionRows (group 7: 8 tokens, 56 rows, not 6 tokens whose 42 rows end in a
  // tile of 2); otherwise about kAttentionRows rows.
  const int64_t tile_rows = std::lcm(group, int64_t{kAttentionRowTile});
  int64_t token_block = tile_rows <= kMaxAttentionRows
                            ? kMaxAttentionRows / tile_rows * tile_rows / group
                            : (kAttentionRows / group > 1 ? kAttentionRows / group : 1);
  if (shape.n_tokens >= 1 && token_block > shape.n_tokens) token_block = shape.n_tokens;
  const int64_t n_ctx = shape.n_past + shape.n_tokens;
  const int64_t base_items = shape.n_kv_heads * ceil_div(shape.n_tokens, token_block);
  int64_t key_chunk = n_ctx;
  if (base_items < kMinItems) {
    const int64_t wanted = ceil_div(kMinItems, base_items);
    const int64_t fit = ceil_div(n_ctx, kMinKeyChunk);
    const int64_t chunks = wanted < fit ? wanted : fit;
    key_chunk = ceil_div(ceil_div(n_ctx, chunks), kKeyBlock) * kKeyBlock;
  }
  return plan_attention(shape, token_block, key_chunk);
}

template <class T>
void run_attention_item(AttentionKernel<T> fn, const AttentionPlan& plan, const float* q,
                        const T* k, const T* v, int64_t item, const AttentionPartials& parts,
                        float* scratch) {
  const int64_t per_head = plan.n_token_blocks * plan.n_key_chunks;
  const int64_t kv_head = item / per_head;
  const int64_t token_block = item % per_head / plan.n_key_chunks;
  const int64_t key_chunk = item % plan.n_key_chunks;
  const int64_t t_begin = token_block * plan.token_block;
  const int64_t t_end = t_begin + plan.token_block < plan.shape.n_tokens
                            ? t_begin + plan.token_block
                            : plan.shape.n_tokens;
  const int64_t key_begin = key_chunk * plan.key_chunk;
  const int64_t key_end = key_begin + plan.key_chunk;
  const int64_t rows = plan.rows_per_item();
  fn(q, k, v, plan.shape, kv_head, t_begin, t_end, key_begin, key_end,
     parts.acc + item * rows * plan.shape.head_dim, parts.row_max + item * rows,
     parts.row_sum + item * rows, scratch);
}

void merge_attention_items(const AttentionPlan& plan, int64_t kv_head, int64_t token_block,
                           const AttentionPartials& parts, float* out) {
  const int64_t head_dim = plan.shape.head_dim;
  const int64_t rows = plan.rows_per_item();
  const int64_t q_stride = plan.shape.n_heads * head_dim;
  const int64_t t_begin = token_block * plan.token_block;
  const int64_t first = (kv_head * plan.n_token_blocks + token_block) * plan.n_key_chunks;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = t_begin + r / plan.group;
    if (t >= plan.shape.n_tokens) break;
    float* o = out + t * q_stride + (kv_head * plan.group + r % plan.group) * head_dim;
    const float* acc0 = parts.acc + (first * rows + r) * head_dim;
    if (plan.n_key_chunks == 1) {
      const float sum = parts.row_sum[first * rows + r];
      for (int64_t d = 0; d < head_dim; ++d) o[d] = acc0[d] / sum;
      continue;
    }
    // Every row sees key 0, so some chunk has a finite max.
    float mx = -INFINITY;
    for (int64_t c = 0; c < plan.n_key_chunks; ++c) {
      const float m = parts.row_max[(first + c) * rows + r];
      mx = m > mx ? m : mx;
    }
    double sum = 0.0;
    for (int64_t d = 0; d < head_dim; ++d) o[d] = 0.0f;
    for (int64_t c = 0; c < plan.n_key_chunks; ++c) {
      const float m = parts.row_max[(first + c) * rows + r];
      if (m == -INFINITY) continue;  // the chunk lies past this row's causal end
      const float w = expf(m - mx);
      sum += double(w) * parts.row_sum[(first + c) * rows + r];
      const float* acc = parts.acc + ((first + c) * rows + r) * head_dim;
      for (int64_t d = 0; d < head_dim; ++d) o[d] += w * acc[d];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t d = 0; d < head_dim; ++d) o[d] *= inv;
  }
}

template <class T>
void run_attention_serial(AttentionKernel<T> fn, const AttentionPlan& plan, const float* q,
                          const T* k, const T* v, float* out) {
  const int64_t slots = plan.n_items() * plan.rows_per_item();
  std::vector<float> acc(static_cast<size_t>(slots * plan.shape.head_dim));
  std::vector<float> stats(static_cast<size_t>(2 * slots));
  std::vector<float> scratch(static_cast<size_t>(plan.scratch_floats()));
  const AttentionPartials parts{acc.data(), stats.data(), stats.data() + slots};
  for (int64_t i = 0; i < plan.n_items(); ++i) {
    run_attention_item(fn, plan, q, k, v, i, parts, scratch.data());
  }
  for (int64_t h = 0; h < plan.shape.n_kv_heads; ++h) {
    for (int64_t b = 0; b < plan.n_token_blocks; ++b) merge_attention_items(plan, h, b, parts, out);
  }
}

template void run_attention_item<float>(AttentionFn, const AttentionPlan&, const float*,
                                        const float*, const float*, int64_t,
                                        const AttentionPartials&, float*);
template void run_attention_item<uint16_t>(AttentionF16Fn, const AttentionPlan&, const float*,
                                           const uint16_t*, const uint16_t*, int64_t,
                                           const AttentionPartials&, float*);
template void run_attention_item<void>(AttentionKvFn, const AttentionPlan&, const float*,
                                       const void*, const void*, int64_t, const AttentionPartials&,
                                       float*);
template void run_attention_serial<void>(AttentionKvFn, const AttentionPlan&, const float*,
                                         const void*, const void*, float*);
template void run_attention_serial<float>(AttentionFn, const AttentionPlan&, const float*,
                                          const float*, const float*, float*);
template void run_attention_serial<uint16_t>(AttentionF16Fn, const AttentionPlan&, const float*,
                                             const uint16_t*, const uint16_t*, float*);

}  // namespace af::cpu
