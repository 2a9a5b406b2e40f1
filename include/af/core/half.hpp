#pragma once
// Scalar IEEE half and bfloat16 conversions (the reference; SIMD paths convert in kernels).
#include <cstdint>
#include <cstring>

namespace af {

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round to nearest even, as PyTorch does; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);  // round to nearest even, overflow to inf

// Writes the float16 bits of src[0, n) to dst and returns true when every value is a float16
// exactly (finite or infinite; -0 keeps its sign); false otherwise (dst then unspecified).
// Vectorised for long arrays (model weights stored as float16 values widened to float32).
bool f32_to_f16_exact(const float* src, int64_t n, uint16_t* dst);

}  // namespace af
