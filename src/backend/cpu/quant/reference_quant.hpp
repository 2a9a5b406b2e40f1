#pragma once
// Scalar reference quantizers and dequantizers for the GGUF block types. They reproduce ggml's
// reference quantizer operation for operation (same float expressions, same evaluation order,
// no fused multiply-adds), so their output is byte-identical to llama.cpp's. k is a multiple of
// the block size; callers check.
#include <cstdint>

namespace af::quant::ref {

void quantize_q4_0(const float* x, void* y, int64_t k);
void quantize_q4_1(const float* x, void* y, int64_t k);
void quantize_q5_0(const float* x, void* y, int64_t k);
void quantize_q5_1(const float* x, void* y, int64_t k);
void quantize_q8_0(const float* x, void* y, int64_t k);
void quantize_q2_k(const float* x, void* y, int64_t k);
void quantize_q3_k(const float* x, void* y, int64_t k);
void quantize_q4_k(const float* x, void* y, int64_t k);
void quantize_q5_k(const float* x, void* y, int64_t k);
void quantize_q6_k(const float* x, void* y, int64_t k);
void quantize_q8_k(const float* x, void* y, int64_t k);

void dequantize_q4_0(const void* x, float* y, int64_t k);
void dequantize_q4_1(const void* x, float* y, int64_t k);
void dequantize_q5_0(const void* x, float* y, int64_t k);
void dequantize_q5_1(const void* x, float* y, int64_t k);
void dequantize_q8_0(const void* x, float* y, int64_t k);
void dequantize_q2_k(const void* x, float* y, int64_t k);
void dequantize_q3_k(const void* x, float* y, int64_t k);
void dequantize_q4_k(const void* x, float* y, int64_t k);
void dequantize_q5_k(const void* x, float* y, int64_t k);
void dequantize_q6_k(const void* x, float* y, int64_t k);
void dequantize_q8_k(const void* x, float* y, int64_t k);

}  // namespace af::quant::ref
