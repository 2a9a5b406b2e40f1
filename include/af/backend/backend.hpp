#pragma once
// The op interface models are written against. One virtual call per op per forward: each call
// covers a whole batch of rows, and the implementation parallelises inside.
// All activations are contiguous row-major float32 arrays; weights are Tensors of any supported
// storage dtype.
#include <cstdint>
#include <memory>
#include <string>

#include "af/backend/key_cache.hpp"
#include "af/core/device.hpp"
#include "af/core/error.hpp"
#include "af/core/tensor.hpp"

namespace af {

enum class RopeLayout {
  kHalf,         // HF rotate_half: pairs (i, i + rotary_dim/2)
  kInterleaved,  // llama2.c / GGUF llama: pairs (2i, 2i + 1)
};

// kErf: 0.5x(1 + erf(x/√2)); kTanh: the tanh approximation (gelu_pytorch_tanh); kQuick: CLIP's
// quick_gelu, x * sigmoid(1.702x).
enum class GeluKind { kErf, kTanh, kQuick };

// Which keys a query row of Backend::attention_rows sees.
enum class AttentionMaskKind {
  kNone,    // every key (encoders, cross-attention)
  kCausal,  // query t sits at position causal_offset + t and sees keys 0 .. causal_offset + t
  kBlocks,  // block-diagonal: query t sees the keys of its own segment only (several images or
            // windows in one call); needs n_q == n_kv
};
struct AttentionMask {
  AttentionMaskKind kind = AttentionMaskKind::kNone;
  int64_t causal_offset = 0;  // kCausal: >= 0, with causal_offset + n_q <= n_kv
  // kBlocks: boundaries[n_segments + 1], strictly increasing from 0 to n_q; segment s holds
  // tokens [boundaries[s], boundaries[s + 1]).
  const int64_t* boundaries = nullptr;
  int64_t n_segments = 0;
};

// A matmul weight in a backend's own form (e.g. repacked for its dot-product instructions),
// made once at load by Backend::prepare_matmul_weight. Opaque: only the backend that made it
// reads it.
struct PreparedWeight {
  virtual ~PreparedWeight() = default;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;  // e.g. "cpu/avx512"
  virtual Device device() const = 0;
  virtual int num_threads() const = 0;

  // y[m, n] = x[m, k] · w[n, k]ᵀ (+ bias[n] when bias != nullptr).
  // w: 2-D Tensor [n, k] of F32, F16, BF16 or a block-quantized type af::quant::is_supported
  // accepts (other dtypes throw kUnsupported naming the dtype). For quantized w the rows of x are
  // first quantized like llama.cpp does (Q8_0 for Q4_0..Q8_0, Q8_K for the K-quants) and the
  // products are integer dot products, so results differ from the float product by that
  // rounding; k must be a multiple of the block size (kInvalidArgument otherwise).
  // prepared: nullptr, or this backend's prepare_matmul_weight(w) for this same w (anything
  // else throws kInvalidArgument). A backend may sum in another float order for prepared
  // weights (the CPU backend does so for float weights; its int8 paths give the same bits).
  virtual void matmul(const float* x, int64_t m, const Tensor& w, const float* bias, float* y,
                      const PreparedWeight* prepared = nullptr) = 0;

  // One product of matmul_group: y = x · weightᵀ (+ bias), with weight's prepared form or null.
  struct MatmulTarget {
    const Tensor* weight;
    const float* bias;
    float* y;
    const PreparedWeight* prepared;
  };
  // Several matmuls of the same x[m, k] (q/k/v projections, gate/up), each exactly as matmul()
  // would compute it. A backend may prepare x once for all of them and run them in one parallel
  // pass; this default runs them one after another.
  virtual void matmul_group(const float* x, int64_t m, const MatmulTarget* targets,
                            int64_t n_targets) {
    for (int64_t i = 0; i < n_targets; ++i) {
      const MatmulTarget& t = targets[i];
      matmul(x, m, *t.weight, t.bias, t.y, t.prepared);
    }
  }

  // matmul_group on the RMS-normalised x: each product exactly as rms_norm(x, norm_weight, m, k,
  // eps, h) followed by matmul_group(h, m, ...) computes it, which is what this default does.
  // x: [m, k], norm_weight: [k]; h: [m, k] floats the backend may use for the normalised rows (its
  // contents afterwards are unspecified; it must not alias x or any target's y). The CPU backend
  // fuses the norm into quantizing the rows for its packed int8 kernels: when every weight takes
  // those, the normalised rows never leave L1.
  virtual void rms_norm_matmul_group(const float* x, const float* norm_weight, float eps, int64_t m,
                                     int64_t k, float* h, const MatmulTarget* targets,
                                     int64_t n_targets) {
    rms_norm(x, norm_weight, m, k, eps, h);
    matmul_group(h, m, targets, n_targets);
  }

  // The form of matmul weight w this backend computes fastest with, to pass to matmul with w
  // (which must stay alive, unchanged, as long as the result is used), or nullptr when w is best
  // used as is. Throws what matmul would throw for a bad w. A copy in new memory may replace w's
  // pages of a file mapping in memory: they are then dropped (MappedFile::release_pages) and
  // fault in again from the file when read.
  virtual std::shared_ptr<const PreparedWeight> prepare_matmul_weight(const Tensor& w) {
    (void)w;
    return nullptr;
  }

  // y[rows, dim] = x * rsqrt(mean(x²) + eps) * w; x and y may alias.
  virtual void rms_norm(const float* x, const float* w, int64_t rows, int64_t dim, float eps,
                        float* y) = 0;
  // y[rows, dim] = (x - mean) * rsqrt(var + eps) * w + b; b may be nullptr; x and y may alias.
  virtual void layer_norm(const float* x, const float* w, const float* b, int64_t rows, int64_t dim,
                          float eps, float* y) = 0;

  // Rotates x[n_tokens, n_heads * head_dim] in place. Token t has position positions[t];
  // the first rotary_dim dims of each head rotate by angle position * inv_freq[i] with
  // inv_freq[rotary_dim / 2] (computed in float32 as position * inv_freq, like HF).
  virtual void rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                    int64_t rotary_dim, const int32_t* positions, const float* inv_freq,
                    RopeLayout layout) = 0;

  // Row-wise softmax of x[rows, n] in place.
  virtual void softmax(float* x, int64_t rows, int64_t n) = 0;
  // x[n] = silu(x) in place.
  virtual void silu(float* x, int64_t n) = 0;
  // gate[n] = silu(gate) * up (SwiGLU), in place on gate.
  virtual void silu_mul(float* gate, const float* up, int64_t n) = 0;
  // x[n] = gelu(x) in place.
  virtual void gelu(float* x, int64_t n, GeluKind kind) = 0;
  // y[n] += scale * x[n].
  virtual void add_scaled(float* y, const float* x, float scale, int64_t n) = 0;
  // x[n] *= scale.
  virtual void scale(float* x, float scale, int64_t n) = 0;

  // Causal attention with grouped KV heads.
  // q:   [n_tokens, n_heads * head_dim], token t sits at position n_past + t
  // k:   the key cache in the blocked layout of af/backend/key_cache.hpp, holding positions
  //      0 .. n_past + n_tokens - 1 (already written, e.g. by store_keys) in at least
  //      key_cache_floats(n_past + n_tokens, n_kv_heads, head_dim) floats; slots past the last
  //      position in its block are read but never weigh in, so they may hold anything
  // v:   [>= n_past + n_tokens, n_kv_heads * head_dim] (the value cache rows, already written)
  // out: [n_tokens, n_heads * head_dim]
  // Query head h reads KV head h / (n_heads / n_kv_heads); scores are q·k * scale.
  virtual void attention(const float* q, const float* k, const float* v, int64_t n_tokens,
                         int64_t n_past, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                         float scale, float* out) = 0;
  // attention() over an f16 KV cache (LoadOptions::kv_type): k in the blocked layout of
  // key_cache.hpp and v as rows, both IEEE half; each cached element is widened exactly to
  // float32, so results differ from the float32 cache only by the f16 rounding of K and V.
  // Backends without it throw kUnsupported.
  virtual void attention_f16(const float* q, const uint16_t* k, const uint16_t* v, int64_t n_tokens,
                             int64_t n_past, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                             float scale, float* out) {
    (void)q, (void)k, (void)v, (void)n_tokens, (void)n_past, (void)n_heads, (void)n_kv_heads,
        (void)head_dim, (void)scale, (void)out;
    fail(ErrorCode::kUnsupported, "backend", name(), " has no f16 KV cache attention");
  }

  // attention() over a KV cache whose keys and values each hold F32, F16 or Q8_0 elements
  // (LoadOptions::kv_type_k / kv_type_v), in the layouts of af/backend/key_cache.hpp: k and v
  // point at the layer's key and value arrays. The kernels read the stored type directly; a q8_0
  // key or value counts as quant * scale, so results differ from the float32 cache only by the
  // rounding of the stored elements. This default serves F32/F32 and F16/F16 through attention()
  // and attention_f16() and throws kUnsupported for the other combinations.
  struct KvCacheView {
    const void* k;
    const void* v;
    DType k_type = DType::F32, v_type = DType::F32;
  };
  virtual void attention_kv(const float* q, const KvCacheView& kv, int64_t n_tokens, int64_t n_past,
                            int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float scale,
                            float* out) {
    if (kv.k_type == DType::F32 && kv.v_type == DType::F32) {
      return attention(q, static_cast<const float*>(kv.k), static_cast<const float*>(kv.v),
                       n_tokens, n_past, n_heads, n_kv_heads, head_dim, scale, out);
    }
    if (kv.k_type == DType::F16 && kv.v_type == DType::F16) {
      return attention_f16(q, static_cast<const uint16_t*>(kv.k),
                           static_cast<const uint16_t*>(kv.v), n_tokens, n_past, n_heads,
                           n_kv_heads, head_dim, scale, out);
    }
    fail(ErrorCode::kUnsupported, "backend", name(), " has no attention over a ",
         af::name(kv.k_type), "/", af::name(kv.v_type), " (K/V) cache");
  }

  // Attention over plain rows (no KV cache), grouped-query aware:
  // q:   [n_q, q_stride], query head h in columns [h * head_dim, (h + 1) * head_dim)
  // k/v: [n_kv, k_stride] / [n_kv, v_stride], KV head g in columns [g * head_dim, ...)
  // out: [n_q, n_heads * head_dim] (must not alias q, k or v)
  // Strides are in floats and >= the heads' width, so q/k/v may be column slices of one fused
  // qkv buffer. Query head h reads KV head h / (n_heads / n_kv_heads); scores are q·k * scale,
  // masked as `mask` says (backend.hpp AttentionMask). Backends without it throw kUnsupported.
  virtual void attention_rows(const float* q, int64_t q_stride, const float* k, int64_t k_stride,
                              const float* v, int64_t v_stride, int64_t n_q, int64_t n_kv,
                              int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float scale,
                              const AttentionMask& mask, float* out) {
    (void)q, (void)q_stride, (void)k, (void)k_stride, (void)v, (void)v_stride, (void)n_q,
        (void)n_kv, (void)n_heads, (void)n_kv_heads, (void)head_dim, (void)scale, (void)mask,
        (void)out;
    fail(ErrorCode::kUnsupported, "backend", name(), " has no attention_rows");
  }

  // y[n, dim] = table[ids[i], :] converted to float32; table is [vocab, dim] of F32/F16/BF16
  // or a supported block-quantized type (rows dequantized as llama.cpp does).
  // Throws kInvalidArgument naming the id if an id is out of range.
  virtual void embedding(const Tensor& table, const int32_t* ids, int64_t n, float* y) = 0;
};

struct BackendOptions {
  Device device = Device::cpu();
  int num_threads = 0;  // 0: hardware concurrency
  std::string isa;      // CPU only: "" (best available), "scalar", "avx2", "avx512"
  // CPU only, opt-in: BF16 weights multiplied with AVX512_BF16 dot products (vdpbf16ps) where
  // the CPU has them. Activations are then rounded to bf16, so results differ slightly from the
  // default exact path (bf16 weights widened to float32); ignored without AVX512_BF16.
  bool bf16_dot = false;
};

// Creates the backend for options.device; CUDA throws kUnsupported "built without CUDA" in
// builds without AF_CUDA.
std::unique_ptr<Backend> make_backend(const BackendOptions& options);

}  // namespace af
