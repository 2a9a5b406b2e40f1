// Reference RMSNorm and LayerNorm.
#include <cmath>

#include "backend/cpu/kernels/reference.hpp"

namespace af::cpu::ref {

void rms_norm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    double ss = 0.0;
    for (int64_t i = 0; i < dim; ++i) ss += double(xr[i]) * double(xr[i]);
    // HF rounds x * rsqrt(...) to float before multiplying by the weight; keep that order.
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / double(dim) + double(eps)));
    for (int64_t i = 0; i < dim; ++i) yr[i] = (xr[i] * inv) * w[i];
  }
}

void layer_norm(const float* x, const float* w, const float* b, int64_t rows, int64_t dim,
                float eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    double sum = 0.0;
    for (int64_t i = 0; i < dim; ++i) sum += xr[i];
    const double mean = sum / double(dim);
    double var = 0.0;
    for (int64_t i = 0; i < dim; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    const double inv = 1.0 / std::sqrt(var / double(dim) + double(eps));
    for (int64_t i = 0; i < dim; ++i) {
      const double v = (xr[i] - mean) * inv * w[i] + (b ? b[i] : 0.0f);
      yr[i] = static_cast<float>(v);
    }
  }
}

}  // namespace af::cpu::ref
