#pragma once
// Storage types. Dense types have block_size 1; GGUF block-quantized types store block_size
// elements in type_size bytes. Numbering follows ggml's type ids so GGUF maps directly.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace af {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
};

struct DTypeInfo {
  std::string_view name;  // ggml spelling, e.g. "q4_K", "bf16"
  int64_t block_size;     // elements per block
  int64_t type_size;      // bytes per block
  bool quantized;
};

// Info for a known type id, or nullopt for ids that ggml never had or has removed.
std::optional<DTypeInfo> dtype_info(uint32_t ggml_type_id);
const DTypeInfo& info(DType dtype);
inline std::string_view name(DType dtype) { return info(dtype).name; }
// Parses names such as "f32", "bf16", "q8_0" (case-insensitive).
std::optional<DType> dtype_from_name(std::string_view name);

// Bytes of one row of `n` elements; throws af::Error if n is not a multiple of the block size
// or the byte count overflows.
int64_t row_bytes(DType dtype, int64_t n);

}  // namespace af
