#pragma once
// Inputs shared by the micro-benchmarks: random activations and random quantized weights.
#include <cstdint>
#include <random>
#include <vector>

#include "af/backend/quant.hpp"
#include "af/core/tensor.hpp"

namespace af::bench {

// n standard-normal floats, the same for the same seed.
inline std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

// A random n x k weight quantized to a block type with the reference quantizer.
inline Tensor quantized_weight(DType type, int64_t n, int64_t k, uint32_t seed = 3) {
  const std::vector<float> w = random_floats(static_cast<size_t>(n * k), seed);
  Tensor t = Tensor::zeros(type, Shape{n, k});
  const int64_t rb = row_bytes(type, k);
  for (int64_t r = 0; r < n; ++r)
    quant::quantize_row(type, w.data() + r * k, t.mutable_data() + r * rb, k);
  return t;
}

}  // namespace af::bench
