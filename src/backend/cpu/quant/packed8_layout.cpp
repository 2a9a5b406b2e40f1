// The 8-row packed layout of packed8.hpp: which types have it, and its (scalar) packer.
#include <algorithm>
#include <cstring>

#include "af/core/error.hpp"
#include "backend/cpu/quant/blocks.hpp"
#include "backend/cpu/quant/packed8.hpp"

namespace af::cpu::quant::packed8 {

bool is_packable(DType type) { return type == DType::Q4_0 || type == DType::Q8_0; }

int64_t group_block_bytes(DType type) {
  switch (type) {
    case DType::Q4_0:
      return kGroupRows * static_cast<int64_t>(sizeof(af::quant::BlockQ4_0));
    case DType::Q8_0:
      return kGroupRows * static_cast<int64_t>(sizeof(af::quant::BlockQ8_0));
    default:
      fail(ErrorCode::kUnsupported, "cpu", "8-row packed weights: type ", name(type),
           " has no such layout (q4_0 and q8_0 do)");
  }
}

void pack_groups(DType type, const uint8_t* w, int64_t n, int64_t k, int64_t g0, int64_t g1,
                 uint8_t* dst) {
  const int64_t group_bytes = group_block_bytes(type);  // throws for other types
  const int64_t block_bytes = group_bytes / kGroupRows;
  const int chunks = type == DType::Q8_0 ? 8 : 4;
  const int qs_offset = 2;  // after the fp16 scale, in both block types
  const int64_t nb = k / af::quant::kQK;
  const int64_t w_row = nb * block_bytes;
  for (int64_t g = g0; g < g1; ++g) {
    uint8_t* out = dst + (g - g0) * nb * group_bytes;
    const int rows = static_cast<int>(std::min<int64_t>(kGroupRows, n - g * kGroupRows));
    if (rows < kGroupRows) std::memset(out, 0, static_cast<size_t>(nb * group_bytes));
    const uint8_t* src = w + g * kGroupRows * w_row;
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* pb = out + b * group_bytes;
      for (int r = 0; r < rows; ++r) {
        const uint8_t* block = src + r * w_row + b * block_bytes;
        std::memcpy(pb + 2 * r, block, 2);
        for (int c = 0; c < chunks; ++c) {
          std::memcpy(pb + 2 * kGroupRows + 32 * c + 4 * r, block + qs_offset + 4 * c, 4);
        }
      }
    }
  }
}

}  // namespace af::cpu::quant::packed8
