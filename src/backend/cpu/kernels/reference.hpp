#pragma once
// Scalar reference kernels: straightforward loops that are the test oracle for the SIMD tables
// and the "scalar" ISA level. Reductions accumulate in double so the oracle is more accurate than
// the float32 kernels it checks. Signatures and shapes are those of kernel_table.hpp.
#include <cstdint>

#include "af/backend/backend.hpp"
#include "backend/cpu/kernels/kernel_table.hpp"

namespace af::cpu::ref {

void matmul_f32(const float* x, int64_t m, int64_t k, const void* w, const float* bias, int64_t n,
                int64_t n_begin, int64_t n_end, float* y);
void matmul_f16(const float* x, int64_t m, int64_t k, const void* w, const float* bias, int64_t n,
                int64_t n_begin, int64_t n_end, float* y);
void matmul_bf16(const float* x, int64_t m, int64_t k, const void* w, const float* bias, int64_t n,
                 int64_t n_begin, int64_t n_end, float* y);

void rms_norm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* y);
void layer_norm(const float* x, const float* w, const float* b, int64_t rows, int64_t dim,
                float eps, float* y);

// Fills cos_sin[2 * (rotary_dim / 2)] with the cos then the sin of position * inv_freq[i],
// the angle rounded to float32 first as HF does. Shared by every ISA so tables agree bit for bit.
void rope_angles(int32_t position, const float* inv_freq, int64_t half, float* cos_sin);
void rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t rotary_dim,
          const int32_t* positions, const float* inv_freq, RopeLayout layout, float* scratch);

void softmax(float* x, int64_t rows, int64_t n);
void silu(float* x, int64_t n);
void silu_mul(float* gate, const float* up, int64_t n);
void gelu_erf(float* x, int64_t n);
void gelu_tanh(float* x, int64_t n);
void gelu_quick(float* x, int64_t n);
void add_scaled(float* y, const float* x, float scale, int64_t n);
void scale(float* x, float scale, int64_t n);

void attention(const float* q, const float* k, const float* v, const AttentionShape& shape,
               int64_t kv_head, int64_t t_begin, int64_t t_end, int64_t key_begin, int64_t key_end,
               float* acc, float* row_max, float* row_sum, float* scratch);
// The same over an f16 KV cache.
void attention_f16(const float* q, const uint16_t* k, const uint16_t* v,
                   const AttentionShape& shape, int64_t kv_head, int64_t t_begin, int64_t t_end,
                   int64_t key_begin, int64_t key_end, float* acc, float* row_max, float* row_sum,
                   float* scratch);

// The same over a cache of key elements K and value elements VT (F32, F16 or Q8_0; layouts of
// af/backend/key_cache.hpp): each stored element read back as float (cached_key/cached_value).
template <DType K, DType VT>
void attention_kv(const float* q, const void* k, const void* v, const AttentionShape& shape,
                  int64_t kv_head, int64_t t_begin, int64_t t_end, int64_t key_begin,
                  int64_t key_end, float* acc, float* row_max, float* row_sum, float* scratch);

// The keys [begin, end) query row t of Backend::attention_rows sees under mask (arguments as
// CpuBackend checked them). Shared by the reference and the CPU backend so both mask alike.
struct KeyRange {
  int64_t begin, end;
};
KeyRange attention_rows_keys(const AttentionMask& mask, int64_t n_kv, int64_t t);
// Backend::attention_rows as a plain float64 softmax(q·kᵀ * scale)·v, row by row: the oracle.
void attention_rows(const float* q, int64_t q_stride, const float* k, int64_t k_stride,
                    const float* v, int64_t v_stride, int64_t n_q, int64_t n_kv, int64_t n_heads,
                    int64_t n_kv_heads, int64_t head_dim, float scale, const AttentionMask& mask,
                    float* out);

void f32_to_f32(const void* src, int64_t n, float* dst);
void f16_to_f32(const void* src, int64_t n, float* dst);
void bf16_to_f32(const void* src, int64_t n, float* dst);

}  // namespace af::cpu::ref
