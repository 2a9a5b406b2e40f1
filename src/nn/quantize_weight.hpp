#pragma once
// Quantization of float weights at load time (llama.cpp's types, its reference quantizer).
#include <string>

#include "af/core/tensor.hpp"

namespace af::nn {

// `w` (2-D F32/F16/BF16) quantized row by row to `type`, in parallel. Rows that are not whole
// blocks of `type` fall back as llama.cpp does (q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0,
// q2_K / q3_K -> q4_0), or stay as stored if no block fits; weights already in a block type are
// returned unchanged. `type` may also be BF16 (float weights rounded to bf16). The source's file
// pages are released (not kept resident) afterwards.
// `what` names the tensor in errors.
Tensor quantize_weight(const Tensor& w, DType type, const std::string& what);

}  // namespace af::nn
