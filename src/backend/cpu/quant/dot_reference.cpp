// Scalar reference dot products in the order quant_kernels.hpp defines, and the scalar table.
#include <cmath>
#include <cstring>
#include <type_traits>

#include "af/core/half.hpp"
#include "backend/cpu/quant/bf16_dot.hpp"
#include "backend/cpu/quant/blocks.hpp"
#include "backend/cpu/quant/quant_kernels.hpp"
#include "backend/cpu/quant/reference_quant.hpp"

namespace af::cpu::quant {

using af::quant::BlockQ2_K;
using af::quant::BlockQ3_K;
using af::quant::BlockQ4_0;
using af::quant::BlockQ4_1;
using af::quant::BlockQ4_K;
using af::quant::BlockQ5_0;
using af::quant::BlockQ5_1;
using af::quant::BlockQ5_K;
using af::quant::BlockQ6_K;
using af::quant::BlockQ8_0;
using af::quant::BlockQ8_K;
using af::quant::kQK;
using af::quant::kQKK;

std::optional<QuantSlot> quant_slot(DType type) {
  switch (type) {
    case DType::Q4_0:
      return kSlotQ4_0;
    case DType::Q4_1:
      return kSlotQ4_1;
    case DType::Q5_0:
      return kSlotQ5_0;
    case DType::Q5_1:
      return kSlotQ5_1;
    case DType::Q8_0:
      return kSlotQ8_0;
    case DType::Q2_K:
      return kSlotQ2_K;
    case DType::Q3_K:
      return kSlotQ3_K;
    case DType::Q4_K:
      return kSlotQ4_K;
    case DType::Q5_K:
      return kSlotQ5_K;
    case DType::Q6_K:
      return kSlotQ6_K;
    case DType::Q8_K:
      return kSlotQ8_K;
    default:
      return std::nullopt;
  }
}

DType vec_dot_type(DType weight_type) {
  switch (weight_type) {
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
    case DType::Q8_K:
      return DType::Q8_K;
    default:
      return DType::Q8_0;
  }
}

namespace {

// A 32-element weight block as signed values, its scale and its min (0 for symmetric types).
struct LegacyBlock {
  int8_t q[kQK];
  float d;
  float m;
};

void decode(const BlockQ4_0& b, LegacyBlock& out) {
  for (int j = 0; j < 16; ++j) {
    out.q[j] = static_cast<int8_t>((b.qs[j] & 0xF) - 8);
    out.q[j + 16] = static_cast<int8_t>((b.qs[j] >> 4) - 8);
  }
  out.d = f16_to_f32(b.d);
  out.m = 0;
}
void decode(const BlockQ4_1& b, LegacyBlock& out) {
  for (int j = 0; j < 16; ++j) {
    out.q[j] = static_cast<int8_t>(b.qs[j] & 0xF);
    out.q[j + 16] = static_cast<int8_t>(b.qs[j] >> 4);
  }
  out.d = f16_to_f32(b.d);
  out.m = f16_to_f32(b.m);
}
template <class Block>
void decode5(const Block& b, int offset, LegacyBlock& out) {
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  for (int j = 0; j < 16; ++j) {
    out.q[j] = static_cast<int8_t>(((b.qs[j] & 0xF) | (((qh >> j) & 1) << 4)) - offset);
    out.q[j + 16] = static_cast<int8_t>(((b.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - offset);
  }
  out.d = f16_to_f32(b.d);
}
void decode(const BlockQ5_0& b, LegacyBlock& out) {
  decode5(b, 16, out);
  out.m = 0;
}
void decode(const BlockQ5_1& b, LegacyBlock& out) {
  decode5(b, 0, out);
  out.m = f16_to_f32(b.m);
}
void decode(const BlockQ8_0& b, LegacyBlock& out) {
  std::memcpy(out.q, b.qs, kQK);
  out.d = f16_to_f32(b.d);
  out.m = 0;
}

// Types whose values are d * q + min rather than d * q.
template <class Block>
constexpr bool kHasMin = std::is_same_v<Block, BlockQ4_1> || std::is_same_v<Block, BlockQ5_1> ||
                         std::is_same_v<Block, BlockQ2_K> || std::is_same_v<Block, BlockQ4_K> ||
                         std::is_same_v<Block, BlockQ5_K>;

template <class Block>
float dot_legacy(int64_t k, const uint8_t* wp, const uint8_t* ap) {
  const auto* w = reinterpret_cast<const Block*>(wp);
  const auto* a = reinterpret_cast<const BlockQ8_0*>(ap);
  float acc = 0;
  float acc_min = 0;
  LegacyBlock wb;
  for (int64_t b = 0; b < k / kQK; ++b) {
    decode(w[b], wb);
    const float da = f16_to_f32(a[b].d);
    int p = 0, suma = 0;
    for (int e = 0; e < kQK; ++e) {
      p += wb.q[e] * a[b].qs[e];
      suma += a[b].qs[e];
    }
    acc = std::fma(wb.d * da, static_cast<float>(p), acc);
    if constexpr (kHasMin<Block>) {
      acc_min = std::fma(wb.m * da, static_cast<float>(suma), acc_min);
    }
  }
  return kHasMin<Block> ? acc + acc_min : acc;
}

// A K-quant super-block as signed values q[256] with per-16-element integer scales and mins
// (mins are 0 for the symmetric types).
struct KBlock {
  int8_t q[kQKK];
  int scale[16];
  int min[16];
  float d;
  float dmin;
};

void decode(const BlockQ2_K& b, KBlock& out) {
  for (int e = 0; e < kQKK; ++e) {
    const int n = e / 128, s = (e % 128) / 32, l = e % 32;
    out.q[e] = static_cast<int8_t>((b.qs[32 * n + l] >> (2 * s)) & 3);
  }
  for (int j = 0; j < 16; ++j) {
    out.scale[j] = b.scales[j] & 0xF;
    out.min[j] = b.scales[j] >> 4;
  }
  out.d = f16_to_f32(b.d);
  out.dmin = f16_to_f32(b.dmin);
}
void decode(const BlockQ3_K& b, KBlock& out) {
  for (int e = 0; e < kQKK; ++e) {
    const int n = e / 128, s = (e % 128) / 32, l = e % 32;
    const int low = (b.qs[32 * n + l] >> (2 * s)) & 3;
    const bool high = (b.hmask[l] >> (4 * n + s)) & 1;
    out.q[e] = static_cast<int8_t>(low - (high ? 0 : 4));
  }
  for (int j = 0; j < 16; ++j) {
    out.scale[j] = af::quant::q3k_scale(b.scales, j);
    out.min[j] = 0;
  }
  out.d = f16_to_f32(b.d);
  out.dmin = 0;
}
template <class Block>
void decode_k4(const Block& b, bool five_bit, KBlock& out) {
  for (int e = 0; e < kQKK; ++e) {
    const int c = e / 64, hi = (e % 64) / 32, l = e % 32;
    int v = hi ? (b.qs[32 * c + l] >> 4) : (b.qs[32 * c + l] & 0xF);
    if (five_bit) {
      const auto& b5 = reinterpret_cast<const BlockQ5_K&>(b);
      v |= ((b5.qh[l] >> (2 * c + hi)) & 1) << 4;
    }
    out.q[e] = static_cast<int8_t>(v);
  }
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    af::quant::k4_scale_min(j, b.scales, &sc, &m);
    out.scale[2 * j] = out.scale[2 * j + 1] = sc;
    out.min[2 * j] = out.min[2 * j + 1] = m;
  }
  out.d = f16_to_f32(b.d);
  out.dmin = f16_to_f32(b.dmin);
}
void decode(const BlockQ4_K& b, KBlock& out) { decode_k4(b, false, out); }
void decode(const BlockQ5_K& b, KBlock& out) { decode_k4(b, true, out); }
void decode(const BlockQ6_K& b, KBlock& out) {
  for (int e = 0; e < kQKK; ++e) {
    const int n = e / 128, s = (e % 128) / 32, l = e % 32;
    const uint8_t lo = b.ql[64 * n + 32 * (s & 1) + l];
    const int low = (s < 2) ? (lo & 0xF) : (lo >> 4);
    const int high = (b.qh[32 * n + l] >> (2 * s)) & 3;
    out.q[e] = static_cast<int8_t>((low | (high << 4)) - 32);
  }
  for (int j = 0; j < 16; ++j) {
    out.scale[j] = b.scales[j];
    out.min[j] = 0;
  }
  out.d = f16_to_f32(b.d);
  out.dmin = 0;
}
void decode(const BlockQ8_K& b, KBlock& out) {
  std::memcpy(out.q, b.qs, kQKK);
  for (int j = 0; j < 16; ++j) {
    out.scale[j] = 1;
    out.min[j] = 0;
  }
  out.d = b.d;
  out.dmin = 0;
}

template <class Block>
float dot_k(int64_t k, const uint8_t* wp, const uint8_t* ap) {
  const auto* w = reinterpret_cast<const Block*>(wp);
  const auto* a = reinterpret_cast<const BlockQ8_K*>(ap);
  float acc = 0;
  KBlock wb;
  for (int64_t b = 0; b < k / kQKK; ++b) {
    decode(w[b], wb);
    int sumi = 0, summ = 0;
    for (int j = 0; j < 16; ++j) {
      int s = 0;
      for (int e = 16 * j; e < 16 * j + 16; ++e) s += wb.q[e] * a[b].qs[e];
      sumi += wb.scale[j] * s;
      summ += wb.min[j] * a[b].bsums[j];
    }
    acc = std::fma(wb.d * a[b].d, static_cast<float>(sumi), acc);
    if constexpr (kHasMin<Block>) {
      acc = std::fma(-(wb.dmin * a[b].d), static_cast<float>(summ), acc);
    }
  }
  return acc;
}

using RowDotFn = float (*)(int64_t, const uint8_t*, const uint8_t*);

constexpr RowDotFn kRowDots[kNumQuantSlots] = {
    dot_legacy<BlockQ4_0>, dot_legacy<BlockQ4_1>, dot_legacy<BlockQ5_0>, dot_legacy<BlockQ5_1>,
    dot_legacy<BlockQ8_0>, dot_k<BlockQ2_K>,      dot_k<BlockQ3_K>,      dot_k<BlockQ4_K>,
    dot_k<BlockQ5_K>,      dot_k<BlockQ6_K>,      dot_k<BlockQ8_K>,
};

template <QuantSlot kSlot>
void tile(int64_t k, const uint8_t* w, int64_t w_stride, int64_t nw, const uint8_t* a,
          int64_t a_stride, int64_t na, float* y, int64_t ldy) {
  ref::dot_tile(kSlot, k, w, w_stride, nw, a, a_stride, na, y, ldy);
}

}  // namespace

namespace ref {

float dot(QuantSlot slot, int64_t k, const uint8_t* w, const uint8_t* a) {
  return kRowDots[slot](k, w, a);
}

void dot_tile(QuantSlot slot, int64_t k, const uint8_t* w, int64_t w_stride, int64_t nw,
              const uint8_t* a, int64_t a_stride, int64_t na, float* y, int64_t ldy) {
  for (int64_t i = 0; i < na; ++i) {
    for (int64_t j = 0; j < nw; ++j) {
      y[i * ldy + j] = kRowDots[slot](k, w + j * w_stride, a + i * a_stride);
    }
  }
}

}  // namespace ref

const QuantKernels& scalar_quant_kernels() {
  static constexpr QuantKernels kTable = {
      "scalar",
      {tile<kSlotQ4_0>, tile<kSlotQ4_1>, tile<kSlotQ5_0>, tile<kSlotQ5_1>, tile<kSlotQ8_0>,
       tile<kSlotQ2_K>, tile<kSlotQ3_K>, tile<kSlotQ4_K>, tile<kSlotQ5_K>, tile<kSlotQ6_K>,
       tile<kSlotQ8_K>},
      af::quant::ref::quantize_q8_0,
      af::quant::ref::quantize_q8_k,
  };
  return kTable;
}

}  // namespace af::cpu::quant

namespace af::cpu::quant::ref {

void bf16_dot_rows(int64_t k, const uint16_t* w, int64_t n_begin, int64_t n_end, const uint16_t* xb,
                   int64_t m, float* y, int64_t ldy) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = n_begin; j < n_end; ++j) {
      double acc = 0;
      for (int64_t t = 0; t < k; ++t) {
        acc += static_cast<double>(bf16_to_f32(xb[i * k + t])) * bf16_to_f32(w[j * k + t]);
      }
      y[i * ldy + j] = static_cast<float>(acc);
    }
  }
}

}  // namespace af::cpu::quant::ref
