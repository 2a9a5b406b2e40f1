#pragma once
// GGUF block quantization (Q8_0, Q4_0, Q4_K, Q6_K, ...): converting rows of floats to and from
// ggml's block layouts. The quantizers reproduce ggml's reference quantizer, so a file written
// here holds the same bytes llama.cpp's quantize would write for the same input.
#include <cstdint>

#include "af/core/dtype.hpp"

namespace af::quant {

// True for the block types this build can quantize, dequantize and multiply with.
bool is_supported(DType type);

// Quantizes one row of k floats into dst (row_bytes(type, k) bytes); k must be a multiple of
// the block size (kInvalidArgument otherwise, naming the type and k).
void quantize_row(DType type, const float* x, void* dst, int64_t k);
// The inverse: y[k] from a row of blocks.
void dequantize_row(DType type, const void* src, float* y, int64_t k);

}  // namespace af::quant
