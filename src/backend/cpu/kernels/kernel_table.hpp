#pragma once
// The CPU kernels of one ISA level as a table of plain function pointers. CpuBackend validates
// arguments and splits work across threads; a kernel only computes the slice it is handed, so
// every kernel here trusts its arguments. Activations are contiguous row-major float32.
#include <cstdint>

#include "af/backend/backend.hpp"

namespace af::cpu {

// Weight storage types the dense kernels read; the value indexes KernelTable arrays.
enum class WeightType : int { kF32 = 0, kF16 = 1, kBF16 = 2 };
inline constexpr int kNumWeightTypes = 3;

// Columns [n_begin, n_end) of y[m, n] = x[m, k] · w[n, k]ᵀ (+ bias[n] when bias != nullptr).
// w points at the whole weight (element type given by the table slot), not at row n_begin.
using MatmulFn = void (*)(const float* x, int64_t m, int64_t k, const void* w, const float* bias,
                          int64_t n, int64_t n_begin, int64_t n_end, float* y);
// y[rows, dim] = x * rsqrt(mean(x²) + eps) * w[dim]; x and y may alias.
using RmsNormFn = void (*)(const float* x, const float* w, int64_t rows, int64_t dim, float eps,
                           float* y);
// y[rows, dim] = (x - mean) * rsqrt(var + eps) * w[dim] + b[dim] (b may be null); may alias.
using LayerNormFn = void (*)(const float* x, const float* w, const float* b, int64_t rows,
                             int64_t dim, float eps, float* y);
// Rotates x[n_tokens, n_heads * head_dim] in place; positions[n_tokens];
// inv_freq[rotary_dim / 2]; scratch[3 * rotary_dim] holds one token's cos/sin tables.
using RopeFn = void (*)(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                        int64_t rotary_dim, const int32_t* positions, const float* inv_freq,
                        RopeLayout layout, float* scratch);
// Row-wise softmax of x[rows, n] in place.
using SoftmaxFn = void (*)(float* x, int64_t rows, int64_t n);
// x[n] = f(x[n]) in place (silu, gelu).
using UnaryFn = void (*)(float* x, int64_t n);
// gate[n] = silu(gate[n]) * up[n].
using SiluMulFn = void (*)(float* gate, const float* up, int64_t n);
// y[n] += scale * x[n].
using AddScaledFn = void (*)(float* y, const float* x, float scale, int64_t n);
// x[n] *= scale.
using ScaleFn = void (*)(float* x, float scale, int64_t n);
// The shape of one Backend::attention call (see backend.hpp).
struct AttentionShape {
  int64_t n_tokens, n_past, n_heads, n_kv_heads, head_dim;
  float scale;
};
// One attention work item: KV head kv_head against keys [key_begin, key_end) for query tokens
// [t_begin, t_end) and all n_heads / n_kv_heads query heads of that KV head, each token further
// limited to its causal keys 0 .. n_past + t. Its rows r = (t - t_begin) * group + i (query head
// kv_head * group + i) get the softmax state over those keys: row_max[r] = the largest score
// (-inf when the row sees none of them), row_sum[r] = sum of exp(score - row_max[r]) and
// acc[r * head_dim ..] = the sum of exp(score - row_max[r]) * value row; scores are q·k * scale.
// q: [n_tokens, n_heads * head_dim]; k: the key cache (af/backend/key_cache.hpp); v: [>= n_past +
// n_tokens, n_kv_heads * head_dim];
// scratch: AttentionPlan::scratch_floats() floats (attention_plan.hpp).
// The query rows the SIMD attention kernels score at once (their scratch holds the item's rows in
// tiles of this many).
inline constexpr int kAttentionRowTile = 8;
template <class T>  // the KV cache's element: float, or uint16_t for f16
using AttentionKernel = void (*)(const float* q, const T* k, const T* v,
                                 const AttentionShape& shape, int64_t kv_head, int64_t t_begin,
                                 int64_t t_end, int64_t key_begin, int64_t key_end, float* acc,
                                 float* row_max, float* row_sum, float* scratch);
using AttentionFn = AttentionKernel<float>;
using AttentionF16Fn = AttentionKernel<uint16_t>;
// The same over a cache whose keys and values each hold one of the KvType elements (k and v as
// the layouts of af/backend/key_cache.hpp give them; q8_0 in bytes).
using AttentionKvFn = AttentionKernel<void>;
// KV cache element types, the index of KernelTable::attention_kv.
enum class KvType : int { kF32 = 0, kF16 = 1, kQ8_0 = 2 };
inline constexpr int kNumKvTypes = 3;
// dst[n] = float(src[n]); src's element type is given by the table slot.
using ToF32Fn = void (*)(const void* src, int64_t n, float* dst);

struct KernelTable {
  const char* isa;  // "scalar", "avx2", "avx512"
  MatmulFn matmul[kNumWeightTypes];
  RmsNormFn rms_norm;
  LayerNormFn layer_norm;
  RopeFn rope;
  SoftmaxFn softmax;
  UnaryFn silu;
  SiluMulFn silu_mul;
  UnaryFn gelu_erf;
  UnaryFn gelu_tanh;
  UnaryFn gelu_quick;  // x * sigmoid(1.702x) (CLIP's quick_gelu)
  AddScaledFn add_scaled;
  ScaleFn scale;
  AttentionFn attention;
  AttentionF16Fn attention_f16;  // the same over an f16 KV cache (elements widened exactly)
  // [key type][value type] (KvType): every combination of f32, f16 and q8_0 elements.
  AttentionKvFn attention_kv[kNumKvTypes][kNumKvTypes];
  ToF32Fn to_f32[kNumWeightTypes];
};

// The per-ISA tables. Only call avx2/avx512 ones after dispatch has checked the CPU.
const KernelTable& scalar_kernel_table();
const KernelTable& avx2_kernel_table();
const KernelTable& avx512_kernel_table();

}  // namespace af::cpu
