#pragma once
// The layout of an attention KEY cache (Backend::attention's k argument), in one place for every
// writer and reader. Elements are float32, or f16 for an f16 KV cache (Backend::attention_f16);
// offsets below count elements. Positions go in blocks of kKeyBlock; block b holds, for each KV
// head h, head_dim rows of kKeyBlock floats: row d is dimension d of the block's keys. So the
// attention kernels load the scores' operand (one dimension of 16 consecutive keys) as one vector,
// without transposing the keys on every call. Values keep plain rows [position][n_kv_heads *
// head_dim].
//
// A q8_0 cache (llama.cpp's -ctk/-ctv q8_0: blocks of 32 int8 with one f16 scale, d = max|x| /
// 127, q = round(x / d)) quantizes each KV head's head_dim values in blocks of kKvQ8Block (the
// last one shorter when head_dim is not a multiple of 32). Offsets there count bytes:
// - keys: the same blocks of kKeyBlock positions; KV head h's slice of a block holds head_dim
//   rows of kKeyBlock int8 (row d: dimension d of the block's keys), then q8_blocks(head_dim)
//   rows of kKeyBlock f16 scales (row b: block b's scale of each key), so the kernels load 16
//   keys' quants or scales as one vector, as they do for float keys;
// - values: rows [position][n_kv_heads * q8_blocks(head_dim)] of llama.cpp's block_q8_0 (an f16
//   scale, then 32 int8; a short last block is zero-padded to 32).
#include <cmath>
#include <cstdint>
#include <cstring>

#include "af/core/dtype.hpp"
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

// q8_0 cache layout (see the top of this file).
inline constexpr int64_t kKvQ8Block = 32;
// One block_q8_0: the f16 scale, then kKvQ8Block int8.
inline constexpr int64_t kKvQ8BlockBytes = 2 + kKvQ8Block;
constexpr int64_t q8_blocks(int64_t head_dim) { return (head_dim + kKvQ8Block - 1) / kKvQ8Block; }
// Bytes of one KV head's slice of one key block: int8 rows, then f16 scale rows.
constexpr int64_t q8_key_slice_bytes(int64_t head_dim) {
  return kKeyBlock * (head_dim + 2 * q8_blocks(head_dim));
}
// Bytes of one KV head's values at one position.
constexpr int64_t q8_value_head_bytes(int64_t head_dim) {
  return q8_blocks(head_dim) * kKvQ8BlockBytes;
}
// Byte offset of KV head kv_head's slice of the key block that holds position pos.
constexpr int64_t q8_key_slice_offset(int64_t pos, int64_t kv_head, int64_t n_kv_heads,
                                      int64_t head_dim) {
  return (pos / kKeyBlock * n_kv_heads + kv_head) * q8_key_slice_bytes(head_dim);
}

// Bytes of the key cache (positions [0, n_positions), whole blocks) and of one position's
// values, for a cache of element type `type` (F32, F16 or Q8_0; 0 for anything else).
constexpr int64_t key_cache_bytes(DType type, int64_t n_positions, int64_t n_kv_heads,
                                  int64_t head_dim) {
  const int64_t blocks = (n_positions + kKeyBlock - 1) / kKeyBlock;
  switch (type) {
    case DType::F32:
      return 4 * key_cache_floats(n_positions, n_kv_heads, head_dim);
    case DType::F16:
      return 2 * key_cache_floats(n_positions, n_kv_heads, head_dim);
    case DType::Q8_0:
      return blocks * n_kv_heads * q8_key_slice_bytes(head_dim);
    default:
      return 0;
  }
}
constexpr int64_t value_row_bytes(DType type, int64_t n_kv_heads, int64_t head_dim) {
  switch (type) {
    case DType::F32:
      return 4 * n_kv_heads * head_dim;
    case DType::F16:
      return 2 * n_kv_heads * head_dim;
    case DType::Q8_0:
      return n_kv_heads * q8_value_head_bytes(head_dim);
    default:
      return 0;
  }
}
// Whether a KV cache may hold elements of this type.
constexpr bool is_kv_cache_type(DType type) {
  return type == DType::F32 || type == DType::F16 || type == DType::Q8_0;
}

// Quantizes x[n] (n <= kKvQ8Block) as llama.cpp's quantize_row_q8_0_ref does: q[i] =
// round(x[i] / d) with d = max|x| / 127, the scale stored as f16. Returns the scale's bits.
inline uint16_t quantize_q8_0_block(const float* x, int64_t n, int8_t* q) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::fmax(amax, std::fabs(x[i]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int64_t i = 0; i < n; ++i) q[i] = static_cast<int8_t>(std::lround(x[i] * id));
  return f32_to_f16(d);
}

// Stores rows[n][n_kv_heads * head_dim] as positions first .. first + n - 1 of a q8_0 key cache.
inline void store_keys_q8_0(int8_t* cache, const float* rows, int64_t n, int64_t first,
                            int64_t n_kv_heads, int64_t head_dim) {
  int8_t q[kKvQ8Block];
  for (int64_t t = 0; t < n; ++t) {
    const int64_t pos = first + t;
    for (int64_t h = 0; h < n_kv_heads; ++h) {
      int8_t* slice = cache + q8_key_slice_offset(pos, h, n_kv_heads, head_dim);
      const float* x = rows + (t * n_kv_heads + h) * head_dim;
      for (int64_t b = 0; b * kKvQ8Block < head_dim; ++b) {
        const int64_t d0 = b * kKvQ8Block;
        const int64_t len = head_dim - d0 < kKvQ8Block ? head_dim - d0 : kKvQ8Block;
        const uint16_t scale = quantize_q8_0_block(x + d0, len, q);
        for (int64_t i = 0; i < len; ++i) slice[(d0 + i) * kKeyBlock + pos % kKeyBlock] = q[i];
        std::memcpy(slice + kKeyBlock * head_dim + 2 * (b * kKeyBlock + pos % kKeyBlock), &scale,
                    2);
      }
    }
  }
}

// Stores rows[n][n_kv_heads * head_dim] as value rows first .. first + n - 1 of a q8_0 cache.
inline void store_values_q8_0(uint8_t* cache, const float* rows, int64_t n, int64_t first,
                              int64_t n_kv_heads, int64_t head_dim) {
  const int64_t row_bytes = value_row_bytes(DType::Q8_0, n_kv_heads, head_dim);
  for (int64_t t = 0; t < n; ++t) {
    uint8_t* row = cache + (first + t) * row_bytes;
    for (int64_t h = 0; h < n_kv_heads; ++h) {
      const float* x = rows + (t * n_kv_heads + h) * head_dim;
      for (int64_t b = 0; b * kKvQ8Block < head_dim; ++b) {
        const int64_t d0 = b * kKvQ8Block;
        const int64_t len = head_dim - d0 < kKvQ8Block ? head_dim - d0 : kKvQ8Block;
        uint8_t* block = row + (h * q8_blocks(head_dim) + b) * kKvQ8BlockBytes;
        int8_t q[kKvQ8Block] = {};  // a short block's tail stays 0
        const uint16_t scale = quantize_q8_0_block(x + d0, len, q);
        std::memcpy(block, &scale, 2);
        std::memcpy(block + 2, q, kKvQ8Block);
      }
    }
  }
}

// Dimension d of KV head h's key / value at position pos, read back as float from a cache of
// element type `type` (F32, F16 or Q8_0): what every attention kernel computes with.
inline float cached_key(const void* k, DType type, int64_t pos, int64_t h, int64_t d,
                        int64_t n_kv_heads, int64_t head_dim) {
  if (type == DType::Q8_0) {
    const auto* slice =
        static_cast<const int8_t*>(k) + q8_key_slice_offset(pos, h, n_kv_heads, head_dim);
    uint16_t scale;
    std::memcpy(&scale,
                slice + kKeyBlock * head_dim + 2 * (d / kKvQ8Block * kKeyBlock + pos % kKeyBlock),
                2);
    return static_cast<float>(slice[d * kKeyBlock + pos % kKeyBlock]) * f16_to_f32(scale);
  }
  const int64_t i = key_offset(pos, h, d, n_kv_heads, head_dim);
  return type == DType::F16 ? f16_to_f32(static_cast<const uint16_t*>(k)[i])
                            : static_cast<const float*>(k)[i];
}
inline float cached_value(const void* v, DType type, int64_t pos, int64_t h, int64_t d,
                          int64_t n_kv_heads, int64_t head_dim) {
  if (type == DType::Q8_0) {
    const auto* block = static_cast<const uint8_t*>(v) +
                        pos * value_row_bytes(type, n_kv_heads, head_dim) +
                        (h * q8_blocks(head_dim) + d / kKvQ8Block) * kKvQ8BlockBytes;
    uint16_t scale;
    std::memcpy(&scale, block, 2);
    return static_cast<float>(static_cast<int8_t>(block[2 + d % kKvQ8Block])) * f16_to_f32(scale);
  }
  const int64_t i = (pos * n_kv_heads + h) * head_dim + d;
  return type == DType::F16 ? f16_to_f32(static_cast<const uint16_t*>(v)[i])
                            : static_cast<const float*>(v)[i];
}

// Stores keys / values rows[n][n_kv_heads * head_dim] at positions first .. first + n - 1 of a
// cache of element type `type` (F32, F16 or Q8_0).
inline void store_keys_as(DType type, void* cache, const float* rows, int64_t n, int64_t first,
                          int64_t n_kv_heads, int64_t head_dim) {
  if (type == DType::Q8_0) {
    store_keys_q8_0(static_cast<int8_t*>(cache), rows, n, first, n_kv_heads, head_dim);
  } else if (type == DType::F16) {
    store_keys(static_cast<uint16_t*>(cache), rows, n, first, n_kv_heads, head_dim);
  } else {
    store_keys(static_cast<float*>(cache), rows, n, first, n_kv_heads, head_dim);
  }
}
inline void store_values_as(DType type, void* cache, const float* rows, int64_t n, int64_t first,
                            int64_t n_kv_heads, int64_t head_dim) {
  const int64_t count = n * n_kv_heads * head_dim;
  if (type == DType::Q8_0) {
    store_values_q8_0(static_cast<uint8_t*>(cache), rows, n, first, n_kv_heads, head_dim);
  } else if (type == DType::F16) {
    uint16_t* out = static_cast<uint16_t*>(cache) + first * n_kv_heads * head_dim;
    for (int64_t i = 0; i < count; ++i) out[i] = f32_to_f16(rows[i]);
  } else {
    std::memcpy(static_cast<float*>(cache) + first * n_kv_heads * head_dim, rows,
                static_cast<size_t>(count) * sizeof(float));
  }
}

}  // namespace af
