#pragma once
// Helpers shared by the quantized-kernel tests.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "af/backend/quant.hpp"
#include "af/core/dtype.hpp"
#include "test_util.hpp"

namespace af::test {

// rows x k values whose magnitudes differ per row (0.1, 1, 10), with a 7x outlier per row.
inline std::vector<float> spread_values(int64_t rows, int64_t k, uint32_t seed) {
  std::vector<float> v = random_floats(static_cast<size_t>(rows * k), -1.f, 1.f, seed);
  for (int64_t r = 0; r < rows; ++r) {
    const float scale = std::pow(10.f, static_cast<float>(r % 3) - 1.f);
    for (int64_t i = 0; i < k; ++i) v[r * k + i] *= scale;
    v[r * k + (r * 37) % k] *= 7.f;
  }
  return v;
}

// The rows of x[rows, k] quantized to `type` by the reference quantizer.
inline std::vector<uint8_t> quantize_rows(DType type, const std::vector<float>& x, int64_t rows,
                                          int64_t k) {
  const int64_t rb = row_bytes(type, k);
  std::vector<uint8_t> out(static_cast<size_t>(rows * rb));
  for (int64_t r = 0; r < rows; ++r) {
    quant::quantize_row(type, x.data() + r * k, out.data() + r * rb, k);
  }
  return out;
}

inline bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

}  // namespace af::test
