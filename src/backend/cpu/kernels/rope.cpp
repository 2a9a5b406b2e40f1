// Reference rotary position embedding.
#include <math.h>

#include "backend/cpu/kernels/reference.hpp"

namespace af::cpu::ref {

void rope_angles(int32_t position, const float* inv_freq, int64_t half, float* cos_sin) {
  for (int64_t i = 0; i < half; ++i) {
    // float32 product, as HF computes inv_freq @ position_ids in float32.
    const float angle = static_cast<float>(position) * inv_freq[i];
    cos_sin[i] = cosf(angle);
    cos_sin[half + i] = sinf(angle);
  }
}

void rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t rotary_dim,
          const int32_t* positions, const float* inv_freq, RopeLayout layout, float* scratch) {
  const int64_t half = rotary_dim / 2;
  const float* cs = scratch;
  const float* sn = scratch + half;
  for (int64_t t = 0; t < n_tokens; ++t) {
    rope_angles(positions[t], inv_freq, half, scratch);
    for (int64_t h = 0; h < n_heads; ++h) {
      float* xh = x + (t * n_heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const int64_t a = layout == RopeLayout::kHalf ? i : 2 * i;
        const int64_t b = layout == RopeLayout::kHalf ? i + half : 2 * i + 1;
        const float x0 = xh[a];
        const float x1 = xh[b];
        xh[a] = x0 * cs[i] - x1 * sn[i];
        xh[b] = x1 * cs[i] + x0 * sn[i];
      }
    }
  }
}

}  // namespace af::cpu::ref
