// Reference dense matmul and weight-row conversion.
#include <cstring>

#include "af/core/half.hpp"
#include "backend/cpu/kernels/kernel_table.hpp"
#include "backend/cpu/kernels/reference.hpp"

namespace af::cpu::ref {
namespace {

float load(const float* w, int64_t i) { return w[i]; }
float load_f16(const uint16_t* w, int64_t i) { return af::f16_to_f32(w[i]); }
float load_bf16(const uint16_t* w, int64_t i) { return af::bf16_to_f32(w[i]); }

// x: [m, k]; w: [n, k] of T read through `get`; y: [m, n], columns [n_begin, n_end) written.
template <class T, float (*get)(const T*, int64_t)>
void matmul_impl(const float* x, int64_t m, int64_t k, const void* w_raw, const float* bias,
                 int64_t n, int64_t n_begin, int64_t n_end, float* y) {
  const T* w = static_cast<const T*>(w_raw);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t j = n_begin; j < n_end; ++j) {
      double acc = 0.0;
      for (int64_t i = 0; i < k; ++i) acc += double(x[r * k + i]) * double(get(w, j * k + i));
      if (bias) acc += double(bias[j]);
      y[r * n + j] = static_cast<float>(acc);
    }
  }
}

}  // namespace

void matmul_f32(const float* x, int64_t m, int64_t k, const void* w, const float* bias, int64_t n,
                int64_t n_begin, int64_t n_end, float* y) {
  matmul_impl<float, load>(x, m, k, w, bias, n, n_begin, n_end, y);
}

void matmul_f16(const float* x, int64_t m, int64_t k, const void* w, const float* bias, int64_t n,
                int64_t n_begin, int64_t n_end, float* y) {
  matmul_impl<uint16_t, load_f16>(x, m, k, w, bias, n, n_begin, n_end, y);
}

void matmul_bf16(const float* x, int64_t m, int64_t k, const void* w, const float* bias, int64_t n,
                 int64_t n_begin, int64_t n_end, float* y) {
  matmul_impl<uint16_t, load_bf16>(x, m, k, w, bias, n, n_begin, n_end, y);
}

void f32_to_f32(const void* src, int64_t n, float* dst) {
  if (n > 0) std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

void f16_to_f32(const void* src, int64_t n, float* dst) {
  const auto* s = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = af::f16_to_f32(s[i]);
}

void bf16_to_f32(const void* src, int64_t n, float* dst) {
  const auto* s = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = af::bf16_to_f32(s[i]);
}

}  // namespace af::cpu::ref
