#pragma once
// Argument checks and sizes shared by the CPU backend's files.
#include <cstdint>

#include "af/core/dtype.hpp"
#include "af/core/error.hpp"
#include "backend/cpu/kernels/kernel_table.hpp"

namespace af::cpu {

inline constexpr const char* kComponent = "cpu";
// Roughly the floats of work one task should get for row-wise ops.
inline constexpr int64_t kRowWork = 16384;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline void check_ptr(const void* p, int64_t count, const char* op, const char* what) {
  AF_CHECK(count == 0 || p != nullptr, ErrorCode::kInvalidArgument, kComponent, op, ": ", what,
           " is null");
}

inline void check_nonneg(int64_t v, const char* op, const char* what) {
  AF_CHECK(v >= 0, ErrorCode::kInvalidArgument, kComponent, op, ": ", what, " must be >= 0, got ",
           v);
}

// The dense kernel slot of a float dtype; throws kUnsupported for anything else.
inline WeightType weight_type(DType dtype, const char* op, const char* what) {
  switch (dtype) {
    case DType::F32:
      return WeightType::kF32;
    case DType::F16:
      return WeightType::kF16;
    case DType::BF16:
      return WeightType::kBF16;
    default:
      fail(ErrorCode::kUnsupported, kComponent, op, ": ", what, " dtype ", name(dtype),
           " is not supported (expected f32, f16 or bf16)");
  }
}

}  // namespace af::cpu
