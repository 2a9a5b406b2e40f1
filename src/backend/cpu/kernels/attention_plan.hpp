#pragma once
// How CpuBackend cuts one attention call into AttentionFn work items, and how it merges the
// items' softmax states into the output. The cut depends on the shape alone, never on the thread
// count, so the results are the same bits whatever the number of threads.
#include <cstdint>

#include "backend/cpu/kernels/kernel_table.hpp"

namespace af::cpu {

struct AttentionPlan {
  AttentionShape shape;
  int64_t group = 1;           // query heads per KV head
  int64_t token_block = 1;     // query tokens per item
  int64_t key_chunk = 1;       // keys per item
  int64_t n_token_blocks = 0;  // ceil(n_tokens / token_block)
  int64_t n_key_chunks = 0;    // ceil((n_past + n_tokens) / key_chunk)

  // Item i is KV head i / (n_token_blocks * n_key_chunks), then token block, then key chunk.
  int64_t n_items() const { return shape.n_kv_heads * n_token_blocks * n_key_chunks; }
  int64_t rows_per_item() const { return token_block * group; }
  // The floats an item's scratch needs (for every kernel table).
  int64_t scratch_floats() const;
};

// The plan for a shape: token blocks of about kAttentionRows rows, and the keys split only when
// the KV heads and token blocks give too few items to keep several threads busy (decode).
AttentionPlan plan_attention(const AttentionShape& shape);
// A plan with the given token block and key chunk (both >= 1), for tests.
AttentionPlan plan_attention(const AttentionShape& shape, int64_t token_block, int64_t key_chunk);

// The softmax states of a plan's items: item i's rows at acc + i * rows_per_item * head_dim,
// row_max + i * rows_per_item and row_sum + i * rows_per_item.
struct AttentionPartials {
  float* acc;
  float* row_max;
  float* row_sum;
};

// Runs item `item` of the plan with kernel `fn` into its slot of `parts` (T: the KV cache's
// element, float or f16; instantiated for both).
template <class T>
void run_attention_item(AttentionKernel<T> fn, const AttentionPlan& plan, const float* q,
                        const T* k, const T* v, int64_t item, const AttentionPartials& parts,
                        float* scratch);

// Merges the key chunks of KV head kv_head, token block token_block (all items run) into out
// [n_tokens, n_heads * head_dim]: the exact combination of the chunks' softmax states.
void merge_attention_items(const AttentionPlan& plan, int64_t kv_head, int64_t token_block,
                           const AttentionPartials& parts, float* out);

// The whole call on the calling thread: every item of the plan, then every merge, into out
// [n_tokens, n_heads * head_dim] (what CpuBackend does across threads; for tests and benches).
template <class T>
void run_attention_serial(AttentionKernel<T> fn, const AttentionPlan& plan, const float* q,
                          const T* k, const T* v, float* out);

}  // namespace af::cpu
