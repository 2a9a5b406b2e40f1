#pragma once
// GGUF block quantization (Q8_0, Q4_0, Q4_K, Q6_K, ...): converting rows of floats to and from
// ggml's block layouts. The quantizers reproduce ggml's reference quantizer, so a file written
// here holds the same bytes llama.cpp's quantize would write for the same input.
#include <cstdint>
#include <optional>

#include "af/core/dtype.hpp"

namespace af::quant {

// True for the block types this build can quantize, dequantize and multiply with.
bool is_supported(DType type);

// The type llama.cpp quantizes a row to when it is not a whole number of `type`'s blocks:
// q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0, q2_K / q3_K -> q4_0; nullopt for the others.
std::optional<DType> fallback_type(DType type);
// The type a float weight with rows of `row_length` elements gets when converted at load to
// `type`: a dense type (F32, F16, BF16) or a block type whose blocks fit the rows as is, else its
// fallback_type if that fits, else nullopt (the weight stays as stored).
std::optional<DType> load_type(DType type, int64_t row_length);

// Quantizes one row of k floats into dst (row_bytes(type, k) bytes); k must be a multiple of
// the block size (kInvalidArgument otherwise, naming the type and k).
void quantize_row(DType type, const float* x, void* dst, int64_t k);
// The inverse: y[k] from a row of blocks.
void dequantize_row(DType type, const void* src, float* y, int64_t k);

}  // namespace af::quant
