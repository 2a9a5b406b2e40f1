#pragma once
// The layout of an attention KEY cache (Backend::attention's k argument), in one place for every
// writer and reader. Elements are float32, or f16 for an f16 KV cache (Backend::attention_f16);
// offsets below count elements. Positions go in blocks of kKeyBlock; block b holds, for each KV
// head h, head_dim rows of kKeyBlock floats: row d is dimension d of the block's keys. So the
// attention kernels load the scores' operand (one dimension of 16 consecutive keys) as one vector,
// without transposing the keys on every call. Values keep plain rows [position][n_kv_heads *
// head_dim].
#include <cstdint>

#include "af/core/half.hpp"

namespace af {

inline constexpr int64_t kKeyBlock = 16;

// Floats a key cache needs to hold positions [0, n_positions): whole blocks, so the last
// (partial) block can be read as full vectors. Slots of positions never stored are unspecified.
constexpr int64_t key_cache_floats(int64_t n_positions, int64_t n_kv_heads, int64_t head_dim) {
  return (n_positions + kKeyBlock - 1) / kKeyBlock * kKeyBlock * n_kv_heads * head_dim;
}

// Where dimension d of KV head kv_head's key at position pos lives.
constexpr int64_t key_offset(int64_t pos, int64_t kv_head, int64_t d, int64_t n_kv_heads,
                             int64_t head_dim) {
  return ((pos / kKeyBlock * n_kv_heads + kv_head) * head_dim + d) * kKeyBlock + pos % kKeyBlock;
}

// The first float of KV head kv_head's rows in the block that holds position pos (a multiple of
// kKeyBlock): dimension d of key pos + i (i < kKeyBlock) is at [d * kKeyBlock + i].
constexpr int64_t key_block_offset(int64_t pos, int64_t kv_head, int64_t n_kv_heads,
                                   int64_t head_dim) {
  return (pos / kKeyBlock * n_kv_heads + kv_head) * head_dim * kKeyBlock;
}

// A cache element from a float: float32 as is, f16 (uint16_t) rounded to nearest even.
inline float to_cache_element(float x, float*) { return x; }
inline uint16_t to_cache_element(float x, uint16_t*) { return f32_to_f16(x); }

// Stores rows[n][n_kv_heads * head_dim] (one key per position, heads side by side) as positions
// first .. first + n - 1 of cache (float32, or f16 for an f16 KV cache).
template <class T>
void store_keys(T* cache, const float* rows, int64_t n, int64_t first, int64_t n_kv_heads,
                int64_t head_dim) {
  const int64_t kv_dim = n_kv_heads * head_dim;
  for (int64_t t = 0; t < n; ++t) {
    const int64_t pos = first + t;
    const float* row = rows + t * kv_dim;
    T* block = cache + key_block_offset(pos, 0, n_kv_heads, head_dim) + pos % kKeyBlock;
    for (int64_t c = 0; c < kv_dim; ++c) {
      block[c * kKeyBlock] = to_cache_element(row[c], static_cast<T*>(nullptr));
    }
  }
}

}  // namespace af
