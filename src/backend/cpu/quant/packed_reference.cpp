// The scalar oracle of the packed kernels: the block-sum dot product over GGUF rows.
#include <cmath>
#include <cstring>

#include "af/core/half.hpp"
#include "backend/cpu/quant/blocks.hpp"
#include "backend/cpu/quant/packed.hpp"

namespace af::cpu::quant::packed::ref {
namespace {

using af::quant::BlockQ4_0;
using af::quant::BlockQ4_1;
using af::quant::BlockQ5_0;
using af::quant::BlockQ5_1;
using af::quant::BlockQ8_0;
using af::quant::kQK;

// One weight block as its 32 integer values (signed, or unsigned for the types with a min),
// its scale and its min.
struct Values {
  int q[kQK];
  float d = 0, m = 0;
};

void nibbles(const uint8_t* qs, uint32_t qh, int offset, Values& v) {
  for (int j = 0; j < 16; ++j) {
    v.q[j] = static_cast<int>((qs[j] & 0xF) | (((qh >> j) & 1u) << 4)) - offset;
    v.q[j + 16] = static_cast<int>((qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4)) - offset;
  }
}

Values decode(DType type, const uint8_t* p) {
  Values v;
  uint32_t qh = 0;
  switch (type) {
    case DType::Q4_0: {
      const auto* b = reinterpret_cast<const BlockQ4_0*>(p);
      nibbles(b->qs, 0, 8, v);
      v.d = f16_to_f32(b->d);
      break;
    }
    case DType::Q4_1: {
      const auto* b = reinterpret_cast<const BlockQ4_1*>(p);
      nibbles(b->qs, 0, 0, v);
      v.d = f16_to_f32(b->d);
      v.m = f16_to_f32(b->m);
      break;
    }
    case DType::Q5_0: {
      const auto* b = reinterpret_cast<const BlockQ5_0*>(p);
      std::memcpy(&qh, b->qh, 4);
      nibbles(b->qs, qh, 16, v);
      v.d = f16_to_f32(b->d);
      break;
    }
    case DType::Q5_1: {
      const auto* b = reinterpret_cast<const BlockQ5_1*>(p);
      std::memcpy(&qh, b->qh, 4);
      nibbles(b->qs, qh, 0, v);
      v.d = f16_to_f32(b->d);
      v.m = f16_to_f32(b->m);
      break;
    }
    default: {
      const auto* b = reinterpret_cast<const BlockQ8_0*>(p);
      for (int j = 0; j < kQK; ++j) v.q[j] = b->qs[j];
      v.d = f16_to_f32(b->d);
      break;
    }
  }
  return v;
}

}  // namespace

float dot_blocksum(DType type, int64_t k, const uint8_t* w_row, const uint8_t* a_q8) {
  const int64_t block_bytes = row_bytes(type, kQK);
  const bool has_min = type == DType::Q4_1 || type == DType::Q5_1;
  const auto* a = reinterpret_cast<const BlockQ8_0*>(a_q8);
  float acc = 0.0f, accm = 0.0f;
  for (int64_t b = 0; b < k / kQK; ++b) {
    const Values w = decode(type, w_row + b * block_bytes);
    int32_t p = 0, sum_a = 0;
    for (int e = 0; e < kQK; ++e) {
      p += w.q[e] * a[b].qs[e];
      sum_a += a[b].qs[e];
    }
    const float da = f16_to_f32(a[b].d);
    acc = std::fma(w.d * da, static_cast<float>(p), acc);
    if (has_min) accm = std::fma(w.m * da, static_cast<float>(sum_a), accm);
  }
  return has_min ? acc + accm : acc;
}

}  // namespace af::cpu::quant::packed::ref
