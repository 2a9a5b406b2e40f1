#include "af/core/half.hpp"

#include <algorithm>

namespace af {

float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400u) == 0);
      bits = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  uint32_t sign = (bits >> 16) & 0x8000u;
  uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
  if (abs >= 0x47800000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65536: inf
  if (abs < 0x38800000u) {  // below the smallest normal half: subnormal or zero
    if (abs < 0x33000000u) return static_cast<uint16_t>(sign);  // rounds to zero
    uint32_t exp = abs >> 23;
    uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - exp;  // so that the result counts units of 2^-24
    uint32_t value = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (value & 1u))) ++value;
    return static_cast<uint16_t>(sign | value);
  }
  uint32_t value = ((abs >> 13) - (112u << 10));
  uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (value & 1u))) ++value;  // may carry into inf: correct
  return static_cast<uint16_t>(sign | value);
}

namespace {

// Whether f is a float16 value exactly, with that value's bits in *h.
bool exact_half(float f, uint16_t* h) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  *h = f32_to_f16(f);
  return f16_to_f32(*h) == f && (*h & 0x8000u) == ((bits >> 16) & 0x8000u);
}

}  // namespace

// Blocks go through a loop without branches that the compiler vectorises: a normal float16
// keeps its top mantissa bits, and a value below 2^-14 (zero or a float16 subnormal) is one when
// x * 2^24 (exact) is an integer, which is then its bits. That covers every finite float16
// (checked against exact_half over all 2^32 floats); a block holding anything else is redone
// value by value.
bool f32_to_f16_exact(const float* __restrict src, int64_t n, uint16_t* __restrict dst) {
  constexpr int64_t kBlock = 256;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = std::min(n, b + kBlock);
    int32_t odd = 0;  // nonzero when some value of the block took neither form exactly
    for (int64_t i = b; i < e; ++i) {
      int32_t bits;
      std::memcpy(&bits, src + i, 4);
      const int32_t sign = (bits >> 16) & 0x8000, exp = (bits >> 23) & 0xff;
      const int32_t mant = bits & 0x7fffff;
      const int32_t small = -(exp < 113);  // all ones below 2^-14
      // Larger values become 0 here, so the conversion to int stays in range.
      const int32_t small_bits = bits & 0x7fffffff & small;
      float magnitude;
      std::memcpy(&magnitude, &small_bits, 4);
      const float scaled = magnitude * 16777216.0f;  // 2^24
      const int32_t sub = static_cast<int32_t>(scaled);
      const int32_t normal = ((exp - 112) << 10) | (mant >> 13);
      const int32_t bad_small = -(static_cast<float>(sub) != scaled);
      const int32_t bad_normal = -(exp > 142) | (mant & 0x1fff);
      odd |= (small & bad_small) | (~small & bad_normal);
      dst[i] = static_cast<uint16_t>(sign | (small & sub) | (~small & normal));
    }
    if (odd == 0) continue;
    for (int64_t i = b; i < e; ++i) {
      if (!exact_half(src[i], dst + i)) return false;
    }
  }
  return true;
}

}  // namespace af
