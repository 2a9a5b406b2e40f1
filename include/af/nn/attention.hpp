#pragma once
// Multi-head self-attention with grouped KV heads over a preallocated KV cache.
#include <cstdint>
#include <memory>
#include <vector>

#include "af/nn/layers.hpp"
#include "af/nn/rope.hpp"

namespace af::nn {

// Per layer: the keys of max_seq positions in the blocked layout of af/backend/key_cache.hpp
// (written with store_keys_as), and the values as rows [max_seq, n_kv_heads * head_dim] (q8_0:
// rows of block_q8_0); keys and values each float32 (exact, the default), f16 (half the memory
// and the bytes a decode step reads at depth; rounded to f16 as llama.cpp's default cache does)
// or q8_0 (8.5 bits per element, as llama.cpp's -ctk/-ctv q8_0). Allocated lazily by the OS
// (calloc), so an unused long context costs address space, not memory. Each array starts on a
// page boundary, so the attention kernels' vector loads never straddle two cache lines.
class KvCache {
 public:
  // type: DType::F32, F16 or Q8_0 for both keys and values (anything else throws
  // kInvalidArgument naming it).
  KvCache(int64_t n_layers, int64_t max_seq, int64_t n_kv_heads, int64_t head_dim,
          DType type = DType::F32);
  // Keys of k_type and values of v_type (each F32, F16 or Q8_0).
  KvCache(int64_t n_layers, int64_t max_seq, int64_t n_kv_heads, int64_t head_dim, DType k_type,
          DType v_type);

  void* k(int64_t layer) { return k_[static_cast<size_t>(layer)].data; }
  void* v(int64_t layer) { return v_[static_cast<size_t>(layer)].data; }
  DType k_type() const { return k_type_; }
  DType v_type() const { return v_type_; }
  int64_t max_seq() const { return max_seq_; }
  int64_t kv_dim() const { return n_kv_heads_ * head_dim_; }
  // Bytes of one position's keys and values in one layer (key blocks' padding not counted).
  int64_t bytes_per_position() const;
  // The same for a cache of these types and head shape, without making one.
  static int64_t bytes_per_position(DType k_type, DType v_type, int64_t n_kv_heads,
                                    int64_t head_dim);

 private:
  struct Free {
    void operator()(void* p) const;
  };
  // A calloc'd block, used from its first page boundary on.
  struct PageAlignedArray {
    std::unique_ptr<void, Free> raw;
    void* data = nullptr;
  };
  std::vector<PageAlignedArray> k_, v_;
  int64_t max_seq_, n_kv_heads_, head_dim_;
  DType k_type_, v_type_;
};

struct SelfAttention {
  Linear q_proj, k_proj, v_proj, o_proj;
  // Per-head RMSNorm of q and k before RoPE (Qwen3's q_norm / k_norm): weight [head_dim], or
  // empty for none.
  RmsNorm q_norm, k_norm;
  int64_t n_heads = 0, n_kv_heads = 0, head_dim = 0;

  static SelfAttention load(const VarBuilder& vb, int64_t hidden, int64_t n_heads,
                            int64_t n_kv_heads, int64_t head_dim, bool qkv_bias, bool o_bias);
  // Prepares the four projections for be (Linear::prepare).
  void prepare(Backend& be);

  // x[rows, hidden] holds one or more sequences: rows [row_begin, row_begin + n) belong to the
  // sequence whose layer cache is k_cache / v_cache (KvCache's layouts), at positions n_past ..
  // (its new keys and values are written there). The projections run once over all rows; attention
  // runs per segment. scratch holds rows * (2 * n_heads + 2 * n_kv_heads) * head_dim floats.
  struct Segment {
    void* k_cache;  // elements of k_type / v_type (KvCache::k / v)
    void* v_cache;
    int64_t row_begin, n, n_past;
    DType k_type = DType::F32, v_type = DType::F32;
    // Sliding window (Mistral): when > 0, the query at position p sees the keys j with
    // p - j < window, and k_cache / v_cache are a ring of `window` rows (position j in row
    // j % window), so the layer's cache stays `window` rows long whatever the context.
    int64_t window = 0;
  };
  // With pre_norm the input is pre_norm(x), fused into the q/k/v products
  // (Backend::rms_norm_matmul_group, which may hold the normalised rows in y meanwhile): y must
  // then not alias x.
  void forward_batch(Backend& be, const Rope& rope, const Segment* segments, int64_t n_segments,
                     const float* x, int64_t rows, const int32_t* positions, float* scratch,
                     float* y, const RmsNorm* pre_norm = nullptr) const;
};

// One segment's cache step: stores its new keys / values ([seg.n, n_kv_heads * head_dim] each)
// at positions seg.n_past.. of its layer cache (a ring when seg.window > 0) and attends q
// [seg.n, n_heads * head_dim] (scores q·k * scale) into out [seg.n, n_heads * head_dim].
void attend_cached(Backend& be, const SelfAttention::Segment& seg, const float* q,
                   const float* keys, const float* values, int64_t n_heads, int64_t n_kv_heads,
                   int64_t head_dim, float scale, float* out);

}  // namespace af::nn
