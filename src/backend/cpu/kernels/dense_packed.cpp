// The dense packed layout and the scalar oracle of its order (dense_packed.hpp).
#include "backend/cpu/kernels/dense_packed.hpp"

#include <cmath>
#include <cstring>

#include "af/core/half.hpp"

namespace af::cpu::dense {
namespace {

float element(WeightType wt, const void* w, int64_t i) {
  switch (wt) {
    case WeightType::kF32:
      return static_cast<const float*>(w)[i];
    case WeightType::kF16:
      return f16_to_f32(static_cast<const uint16_t*>(w)[i]);
    case WeightType::kBF16:
      break;
  }
  return bf16_to_f32(static_cast<const uint16_t*>(w)[i]);
}

}  // namespace

void pack(WeightType wt, const void* w, int64_t n, int64_t k, int64_t g0, int64_t g1, int64_t c0,
          int64_t c1, uint8_t* dst) {
  const int64_t chunks = c1 - c0;
  for (int64_t g = g0; g < g1; ++g) {
    for (int64_t c = c0; c < c1; ++c) {
      uint8_t* chunk = dst + ((g - g0) * chunks + (c - c0)) * 64;
      for (int r = 0; r < kGroupRows; ++r) {
        const int64_t row = g * kGroupRows + r;
        if (wt == WeightType::kF32) {
          const float v = row < n ? static_cast<const float*>(w)[row * k + c] : 0.f;
          std::memcpy(chunk + 4 * r, &v, 4);
          continue;
        }
        const auto* src = static_cast<const uint16_t*>(w);
        for (int e = 0; e < 2; ++e) {
          const int64_t t = 2 * c + e;
          const uint16_t v = row < n && t < k ? src[row * k + t] : uint16_t{0};
          std::memcpy(chunk + 32 * e + 2 * r, &v, 2);
        }
      }
    }
  }
}

namespace ref {

void packed_order_matmul(WeightType wt, const void* w, int64_t n, int64_t k, const float* x,
                         int64_t m, const float* bias, float* y) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      float acc = 0.f;
      for (int64_t t = 0; t < k; ++t) acc = std::fma(x[i * k + t], element(wt, w, j * k + t), acc);
      y[i * n + j] = bias ? acc + bias[j] : acc;
    }
  }
}

}  // namespace ref
}  // namespace af::cpu::dense
