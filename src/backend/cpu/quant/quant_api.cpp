// af::quant: argument checks around the reference quantizers.
#include <string>

#include "af/backend/quant.hpp"
#include "af/core/error.hpp"
#include "backend/cpu/quant/reference_quant.hpp"

namespace af::quant {
namespace {

constexpr const char* kComponent = "quant";

struct RowCodec {
  void (*quantize)(const float*, void*, int64_t);
  void (*dequantize)(const void*, float*, int64_t);
};

// nullopt-like: both null for types without a codec.
RowCodec codec(DType type) {
  switch (type) {
    case DType::Q4_0:
      return {ref::quantize_q4_0, ref::dequantize_q4_0};
    case DType::Q4_1:
      return {ref::quantize_q4_1, ref::dequantize_q4_1};
    case DType::Q5_0:
      return {ref::quantize_q5_0, ref::dequantize_q5_0};
    case DType::Q5_1:
      return {ref::quantize_q5_1, ref::dequantize_q5_1};
    case DType::Q8_0:
      return {ref::quantize_q8_0, ref::dequantize_q8_0};
    case DType::Q2_K:
      return {ref::quantize_q2_k, ref::dequantize_q2_k};
    case DType::Q3_K:
      return {ref::quantize_q3_k, ref::dequantize_q3_k};
    case DType::Q4_K:
      return {ref::quantize_q4_k, ref::dequantize_q4_k};
    case DType::Q5_K:
      return {ref::quantize_q5_k, ref::dequantize_q5_k};
    case DType::Q6_K:
      return {ref::quantize_q6_k, ref::dequantize_q6_k};
    case DType::Q8_K:
      return {ref::quantize_q8_k, ref::dequantize_q8_k};
    default:
      return {nullptr, nullptr};
  }
}

RowCodec checked_codec(DType type, int64_t k, const char* op) {
  const RowCodec c = codec(type);
  AF_CHECK(c.quantize != nullptr, ErrorCode::kUnsupported, kComponent, op, ": type ",
           std::string(name(type)), " is not a supported block-quantized type");
  const int64_t block = info(type).block_size;
  AF_CHECK(k >= 0 && k % block == 0, ErrorCode::kInvalidArgument, kComponent, op, ": row length ",
           k, " is not a multiple of the ", std::string(name(type)), " block size ", block);
  return c;
}

}  // namespace

bool is_supported(DType type) { return codec(type).quantize != nullptr; }

std::optional<DType> fallback_type(DType type) {
  switch (type) {
    case DType::Q4_K:
      return DType::Q5_0;
    case DType::Q5_K:
      return DType::Q5_1;
    case DType::Q6_K:
      return DType::Q8_0;
    case DType::Q2_K:
    case DType::Q3_K:
      return DType::Q4_0;
    default:
      return std::nullopt;
  }
}

std::optional<DType> load_type(DType type, int64_t row_length) {
  if (!info(type).quantized || row_length % info(type).block_size == 0) return type;
  const std::optional<DType> alt = fallback_type(type);
  if (alt && row_length % info(*alt).block_size == 0) return alt;
  return std::nullopt;
}

void quantize_row(DType type, const float* x, void* dst, int64_t k) {
  const RowCodec c = checked_codec(type, k, "quantize_row");
  if (k == 0) return;
  AF_CHECK(x != nullptr && dst != nullptr, ErrorCode::kInvalidArgument, kComponent,
           "quantize_row: null pointer");
  c.quantize(x, dst, k);
}

void dequantize_row(DType type, const void* src, float* y, int64_t k) {
  const RowCodec c = checked_codec(type, k, "dequantize_row");
  if (k == 0) return;
  AF_CHECK(src != nullptr && y != nullptr, ErrorCode::kInvalidArgument, kComponent,
           "dequantize_row: null pointer");
  c.dequantize(src, y, k);
}

}  // namespace af::quant
