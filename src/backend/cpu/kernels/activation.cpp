// Reference softmax and elementwise activations, written as PyTorch's float32 formulas.
#include <math.h>

#include "backend/cpu/kernels/reference.hpp"

namespace af::cpu::ref {

void softmax(float* x, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * n;
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; ++i) mx = xr[i] > mx ? xr[i] : mx;
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      xr[i] = expf(xr[i] - mx);
      sum += xr[i];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t i = 0; i < n; ++i) xr[i] *= inv;
  }
}

void silu(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] / (1.0f + expf(-x[i]));
}

void silu_mul(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

void gelu_erf(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

void gelu_tanh(float* x, int64_t n) {
  const float k = 0.7978845608028654f;  // sqrt(2 / pi)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    x[i] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
  }
}

// transformers' QuickGELUActivation: input * torch.sigmoid(1.702 * input).
void gelu_quick(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] * (1.0f / (1.0f + expf(-1.702f * x[i])));
}

void add_scaled(float* y, const float* x, float scale, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += scale * x[i];
}

void scale(float* x, float scale, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= scale;
}

}  // namespace af::cpu::ref
