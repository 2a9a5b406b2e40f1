// Packing GGUF rows into the group layout of packed.hpp, and splitting activation rows.
#include <algorithm>
#include <cstring>

#include "af/core/error.hpp"
#include "af/core/half.hpp"
#include "backend/cpu/quant/blocks.hpp"
#include "backend/cpu/quant/packed.hpp"

namespace af::cpu::quant::packed {
namespace {

using af::quant::BlockQ4_0;
using af::quant::BlockQ4_1;
using af::quant::BlockQ5_0;
using af::quant::BlockQ5_1;
using af::quant::BlockQ8_0;
using af::quant::kQK;

// Where each part of a packed group block starts (-1: the type has no such part).
struct Layout {
  int block_bytes;  // GGUF bytes of one block
  int d, m, qs, masks, group_bytes;
};

Layout layout(DType type) {
  switch (type) {
    case DType::Q4_0:
      return {18, 0, -1, 32, -1, 288};
    case DType::Q4_1:
      return {20, 0, 32, 64, -1, 320};
    case DType::Q5_0:
      return {22, 0, -1, 32, 288, 352};
    case DType::Q5_1:
      return {24, 0, 32, 64, 320, 384};
    case DType::Q8_0:
      return {34, 0, -1, 32, -1, 544};
    default:
      fail(ErrorCode::kUnsupported, "cpu", "packed weights: type ", name(type),
           " has no packed layout (expected q4_0, q4_1, q5_0, q5_1 or q8_0)");
  }
}

// The parts of one GGUF block, wherever the type keeps them.
struct BlockView {
  uint16_t d = 0, m = 0;
  const uint8_t* qs = nullptr;  // 16 nibble bytes, or 32 int8 for Q8_0
  uint32_t qh = 0;              // fifth bits
};

BlockView view(DType type, const uint8_t* p) {
  BlockView v;
  switch (type) {
    case DType::Q4_0: {
      const auto* b = reinterpret_cast<const BlockQ4_0*>(p);
      v.d = b->d;
      v.qs = b->qs;
      break;
    }
    case DType::Q4_1: {
      const auto* b = reinterpret_cast<const BlockQ4_1*>(p);
      v.d = b->d;
      v.m = b->m;
      v.qs = b->qs;
      break;
    }
    case DType::Q5_0: {
      const auto* b = reinterpret_cast<const BlockQ5_0*>(p);
      v.d = b->d;
      v.qs = b->qs;
      std::memcpy(&v.qh, b->qh, 4);
      break;
    }
    case DType::Q5_1: {
      const auto* b = reinterpret_cast<const BlockQ5_1*>(p);
      v.d = b->d;
      v.m = b->m;
      v.qs = b->qs;
      std::memcpy(&v.qh, b->qh, 4);
      break;
    }
    default: {
      const auto* b = reinterpret_cast<const BlockQ8_0*>(p);
      v.d = b->d;
      v.qs = reinterpret_cast<const uint8_t*>(b->qs);
      break;
    }
  }
  return v;
}

}  // namespace

bool is_packable(DType type) {
  return type == DType::Q4_0 || type == DType::Q4_1 || type == DType::Q5_0 || type == DType::Q5_1 ||
         type == DType::Q8_0;
}

int64_t group_block_bytes(DType type) { return layout(type).group_bytes; }

namespace {

// One type's packer, its layout known at compile time. Group g goes to dst + (g - g0) * group
// bytes; loops run block by block over the 16 rows so the masks build up in registers.
template <DType Type>
void pack_typed(const uint8_t* w, int64_t n, int64_t k, int64_t g0, int64_t g1, uint8_t* dst) {
  static const Layout lay = layout(Type);
  constexpr bool kQ8 = Type == DType::Q8_0;
  constexpr bool kFifth = Type == DType::Q5_0 || Type == DType::Q5_1;
  constexpr bool kMin = Type == DType::Q4_1 || Type == DType::Q5_1;
  constexpr int kChunks = kQ8 ? 8 : 4;
  const int64_t nb = k / kQK;
  const int64_t w_row = nb * lay.block_bytes;
  for (int64_t g = g0; g < g1; ++g) {
    uint8_t* out = dst + (g - g0) * nb * lay.group_bytes;
    const int rows = static_cast<int>(std::min<int64_t>(kGroupRows, n - g * kGroupRows));
    if (rows < kGroupRows) std::memset(out, 0, static_cast<size_t>(nb * lay.group_bytes));
    const uint8_t* src = w + g * kGroupRows * w_row;
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* pb = out + b * lay.group_bytes;
      uint64_t masks[8] = {};
      for (int r = 0; r < rows; ++r) {
        const BlockView v = view(Type, src + r * w_row + b * lay.block_bytes);
        std::memcpy(pb + lay.d + 2 * r, &v.d, 2);
        if constexpr (kMin) std::memcpy(pb + lay.m + 2 * r, &v.m, 2);
        for (int c = 0; c < kChunks; ++c) {
          uint32_t bytes;
          std::memcpy(&bytes, v.qs + 4 * c, 4);
          if constexpr (kQ8) bytes ^= 0x80808080u;  // signed -> unsigned q + 128
          std::memcpy(pb + lay.qs + 64 * c + 4 * r, &bytes, 4);
        }
        if constexpr (kFifth) {
          // Mask c covers elements 4c..4c+3 of every row (bit 4r + e).
          for (int c = 0; c < 8; ++c) masks[c] |= uint64_t{(v.qh >> (4 * c)) & 0xFu} << (4 * r);
        }
      }
      if constexpr (kFifth) std::memcpy(pb + lay.masks, masks, sizeof(masks));
    }
  }
}

}  // namespace

void pack_groups(DType type, const uint8_t* w, int64_t n, int64_t k, int64_t g0, int64_t g1,
                 uint8_t* dst) {
  switch (type) {
    case DType::Q4_0:
      return pack_typed<DType::Q4_0>(w, n, k, g0, g1, dst);
    case DType::Q4_1:
      return pack_typed<DType::Q4_1>(w, n, k, g0, g1, dst);
    case DType::Q5_0:
      return pack_typed<DType::Q5_0>(w, n, k, g0, g1, dst);
    case DType::Q5_1:
      return pack_typed<DType::Q5_1>(w, n, k, g0, g1, dst);
    case DType::Q8_0:
      return pack_typed<DType::Q8_0>(w, n, k, g0, g1, dst);
    default:
      layout(type);  // throws for types without a packed layout
  }
}

void split_activation_row(DType type, const uint8_t* a_q8, int64_t k, int8_t* qs, float* d,
                          int32_t* offset, float* asum) {
  const int32_t unsigned_offset = weight_offset(type);
  const auto* blocks = reinterpret_cast<const BlockQ8_0*>(a_q8);
  for (int64_t b = 0; b < k / kQK; ++b) {
    std::memcpy(qs + b * kQK, blocks[b].qs, kQK);
    int32_t sum = 0;
    for (int e = 0; e < kQK; ++e) sum += blocks[b].qs[e];
    d[b] = f16_to_f32(blocks[b].d);
    offset[b] = -unsigned_offset * sum;
    asum[b] = static_cast<float>(sum);
  }
}

}  // namespace af::cpu::quant::packed
