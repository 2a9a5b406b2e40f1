// The packed bf16 layout of bf16_dot.hpp, in plain C++ (a transposition of 32-bit pairs).
#include <algorithm>
#include <cstring>

#include "backend/cpu/quant/bf16_dot.hpp"

namespace af::cpu::quant {

void bf16_pack(const uint16_t* w, int64_t n, int64_t k, int64_t g0, int64_t g1, int64_t p0,
               int64_t p1, uint32_t* dst) {
  const int64_t pairs = p1 - p0;
  // Pairs wholly inside the row can be read as one 32-bit word; an odd k's last pair is not.
  const int64_t whole_end = std::min(p1, k / 2);
  for (int64_t g = g0; g < g1; ++g) {
    uint32_t* out = dst + (g - g0) * pairs * kBf16GroupRows;
    for (int r = 0; r < kBf16GroupRows; ++r) {
      const int64_t row = g * kBf16GroupRows + r;
      if (row >= n) {
        for (int64_t p = 0; p < pairs; ++p) out[p * kBf16GroupRows + r] = 0;
        continue;
      }
      const uint16_t* src = w + row * k;
      int64_t p = p0;
      for (; p < whole_end; ++p) {
        uint32_t word;
        std::memcpy(&word, src + 2 * p, 4);
        out[(p - p0) * kBf16GroupRows + r] = word;
      }
      for (; p < p1; ++p) {  // the pair holding an odd k's last element, then nothing
        out[(p - p0) * kBf16GroupRows + r] = 2 * p < k ? src[2 * p] : 0u;
      }
    }
  }
}

}  // namespace af::cpu::quant
