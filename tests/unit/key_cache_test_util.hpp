#pragma once
// Key caches for attention tests, in the blocked layout of af/backend/key_cache.hpp.
#include <cmath>
#include <cstdint>
#include <vector>

#include "af/backend/key_cache.hpp"

namespace af::test {

// The first n_positions keys of rows [>= n_positions][n_kv_heads * head_dim] as a key cache.
// Slots past the last position in its block hold NaN: attention must mask them, not read them.
inline std::vector<float> blocked_keys(const std::vector<float>& rows, int64_t n_positions,
                                       int64_t n_kv_heads, int64_t head_dim) {
  std::vector<float> cache(static_cast<size_t>(key_cache_floats(n_positions, n_kv_heads, head_dim)),
                           NAN);
  store_keys(cache.data(), rows.data(), n_positions, 0, n_kv_heads, head_dim);
  return cache;
}

// The same as an f16 key cache (keys rounded to f16; unused slots f16 NaN).
inline std::vector<uint16_t> blocked_keys_f16(const std::vector<float>& rows, int64_t n_positions,
                                              int64_t n_kv_heads, int64_t head_dim) {
  std::vector<uint16_t> cache(
      static_cast<size_t>(key_cache_floats(n_positions, n_kv_heads, head_dim)), uint16_t{0x7E00});
  store_keys(cache.data(), rows.data(), n_positions, 0, n_kv_heads, head_dim);
  return cache;
}

}  // namespace af::test
