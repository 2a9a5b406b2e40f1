// Quantized dot-product kernels: every ISA table against the scalar reference (bit for bit),
// odd tile edges, thread-count independence of CpuBackend::matmul, and bad arguments.
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "af/backend/quant.hpp"
#include "af/core/error.hpp"
#include "af/core/half.hpp"
#include "af/core/tensor.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/dispatch.hpp"
#include "backend/cpu/quant/bf16_dot.hpp"
#include "backend/cpu/quant/blocks.hpp"
#include "backend/cpu/quant/quant_kernels.hpp"
#include "quant_test_util.hpp"

namespace {

using af::DType;
using af::Shape;
using af::Tensor;
namespace q = af::cpu::quant;

const DType kTypes[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                        DType::Q8_0, DType::Q2_K, DType::Q3_K, DType::Q4_K,
                        DType::Q5_K, DType::Q6_K, DType::Q8_K};

std::vector<const q::QuantKernels*> tables() {
  std::vector<const q::QuantKernels*> t = {&q::scalar_quant_kernels()};
  if (af::cpu::isa_supported(af::cpu::Isa::kAvx2)) t.push_back(&q::avx2_quant_kernels());
  if (af::cpu::cpu_has_avx_vnni()) t.push_back(&q::avxvnni_quant_kernels());
  if (af::cpu::isa_supported(af::cpu::Isa::kAvx512)) t.push_back(&q::avx512_quant_kernels());
  if (af::cpu::cpu_has_avx512_vnni_bf16()) t.push_back(&q::avx512vnni_quant_kernels());
  return t;
}

// rows x k values with per-row magnitudes spread over a few orders and occasional outliers.
std::vector<float> test_values(int64_t rows, int64_t k, uint32_t seed) {
  std::vector<float> v = af::test::random_floats(static_cast<size_t>(rows * k), -1.f, 1.f, seed);
  for (int64_t r = 0; r < rows; ++r) {
    const float scale = std::pow(10.f, static_cast<float>(r % 4) - 2.f);
    for (int64_t i = 0; i < k; ++i) v[r * k + i] *= scale;
    v[r * k + (r * 37) % k] *= 9.f;
  }
  return v;
}

using af::test::quantize_rows;
using af::test::same_bits;

TEST(QuantKernels, EveryIsaMatchesTheReferenceBitForBit) {
  for (DType type : kTypes) {
    const q::QuantSlot slot = *q::quant_slot(type);
    const DType act_type = q::vec_dot_type(type);
    const int64_t block = af::info(type).block_size;
    for (int64_t blocks : {1, 3, 5}) {
      const int64_t k = block * blocks;
      const int64_t nw = 11, na = 6;
      std::vector<uint8_t> w = quantize_rows(type, test_values(nw, k, 1), nw, k);
      if (type == DType::Q8_0) {  // a file may hold -128, which our quantizer never writes
        reinterpret_cast<af::quant::BlockQ8_0*>(w.data())[0].qs[5] = -128;
      }
      const std::vector<uint8_t> a = quantize_rows(act_type, test_values(na, k, 2), na, k);
      const int64_t ws = af::row_bytes(type, k), as = af::row_bytes(act_type, k);
      for (const q::QuantKernels* t : tables()) {
        // Full tiles, row remainders and column remainders: na = 6 and nw = 11 cover them all
        // for tiles up to 4 x 4; na = 1 is the decode path.
        for (int64_t rows : {na, int64_t{1}}) {
          std::vector<float> y(static_cast<size_t>(rows * nw), -1.f);
          t->dot[slot](k, w.data(), ws, nw, a.data(), as, rows, y.data(), nw);
          for (int64_t i = 0; i < rows; ++i) {
            for (int64_t j = 0; j < nw; ++j) {
              const float ref = q::ref::dot(slot, k, w.data() + j * ws, a.data() + i * as);
              ASSERT_TRUE(same_bits(y[i * nw + j], ref))
                  << t->isa << " " << af::name(type) << " k=" << k << " rows=" << rows << " (" << i
                  << ", " << j << "): " << y[i * nw + j] << " vs " << ref;
            }
          }
        }
      }
    }
  }
}

const DType kLegacyTypes[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0};

// A random half of magnitude 2^-14 .. 2^6 (normal and never 0), either sign.
uint16_t random_half(std::mt19937& rng) {
  std::uniform_real_distribution<float> mantissa(1.f, 2.f);
  std::uniform_int_distribution<int> exponent(-14, 5), sign(0, 1);
  const float v = std::ldexp(mantissa(rng), exponent(rng)) * (sign(rng) ? -1.f : 1.f);
  return af::f32_to_f16(v);
}

// rows x k of `type` with every quant value, qh bit and scale drawn at random (Q8_0 including
// -128, which files may hold), unlike quantized data whose scale matches the values.
std::vector<uint8_t> random_legacy_rows(DType type, int64_t rows, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  const int64_t rb = af::row_bytes(type, k);
  std::vector<uint8_t> out(static_cast<size_t>(rows * rb));
  for (auto& b : out) b = static_cast<uint8_t>(byte(rng));
  // The scales (d, then m for the types with a min) lead each block.
  const int64_t block_bytes = af::info(type).type_size;
  const int halves = (type == DType::Q4_1 || type == DType::Q5_1) ? 2 : 1;
  for (int64_t off = 0; off < static_cast<int64_t>(out.size()); off += block_bytes) {
    for (int h = 0; h < halves; ++h) {
      const uint16_t v = random_half(rng);
      std::memcpy(out.data() + off + 2 * h, &v, 2);
    }
  }
  return out;
}

// Q8_0 activation rows with random quants in [-127, 127] (the activation quantizer's range) and
// random scales.
std::vector<uint8_t> random_activation_rows(int64_t rows, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> quant(-127, 127);
  std::vector<af::quant::BlockQ8_0> out(static_cast<size_t>(rows * k / af::quant::kQK));
  for (auto& b : out) {
    b.d = random_half(rng);
    for (int8_t& v : b.qs) v = static_cast<int8_t>(quant(rng));
  }
  std::vector<uint8_t> bytes(out.size() * sizeof(af::quant::BlockQ8_0));
  std::memcpy(bytes.data(), out.data(), bytes.size());
  return bytes;
}

// Weight value e of a legacy block (q for the symmetric types, the unsigned value for those with
// a min), its scale and its min, decoded here independently of the kernels.
struct DecodedBlock {
  int q[32];
  float d, m;
};
DecodedBlock decode_legacy(DType type, const uint8_t* block) {
  DecodedBlock out{};
  uint16_t d, m = 0;
  std::memcpy(&d, block, 2);
  const bool has_min = type == DType::Q4_1 || type == DType::Q5_1;
  if (has_min) std::memcpy(&m, block + 2, 2);
  out.d = af::f16_to_f32(d);
  out.m = af::f16_to_f32(m);
  if (type == DType::Q8_0) {
    for (int e = 0; e < 32; ++e) out.q[e] = static_cast<int8_t>(block[2 + e]);
    return out;
  }
  const bool five_bit = type == DType::Q5_0 || type == DType::Q5_1;
  const uint8_t* qh = block + (has_min ? 4 : 2);
  const uint8_t* qs = qh + (five_bit ? 4 : 0);
  uint32_t high = 0;
  if (five_bit) std::memcpy(&high, qh, 4);
  const int offset = has_min ? 0 : (five_bit ? 16 : 8);
  for (int e = 0; e < 32; ++e) {
    const int nibble = e < 16 ? (qs[e] & 0xF) : (qs[e - 16] >> 4);
    out.q[e] = (nibble | (static_cast<int>((high >> e) & 1) << 4)) - offset;
  }
  return out;
}

// The order quant_kernels.hpp defines for the 32-element types, written out.
float defined_legacy_dot(DType type, int64_t k, const uint8_t* w, const uint8_t* a) {
  const int64_t block_bytes = af::info(type).type_size;
  const bool has_min = type == DType::Q4_1 || type == DType::Q5_1;
  float acc = 0.f, acc_min = 0.f;
  for (int64_t b = 0; b < k / 32; ++b) {
    const DecodedBlock wb = decode_legacy(type, w + b * block_bytes);
    af::quant::BlockQ8_0 ab;
    std::memcpy(&ab, a + b * sizeof(ab), sizeof(ab));
    const float da = af::f16_to_f32(ab.d);
    int32_t p = 0, s = 0;
    for (int e = 0; e < 32; ++e) {
      p += wb.q[e] * ab.qs[e];
      s += ab.qs[e];
    }
    acc = std::fma(wb.d * da, static_cast<float>(p), acc);
    if (has_min) acc_min = std::fma(wb.m * da, static_cast<float>(s), acc_min);
  }
  return has_min ? acc + acc_min : acc;
}

TEST(QuantKernels, LegacyReferenceFollowsTheDefinedOrder) {
  for (DType type : kLegacyTypes) {
    const q::QuantSlot slot = *q::quant_slot(type);
    for (int64_t k : {32, 96, 4864}) {
      const int64_t rows = 9;
      const std::vector<uint8_t> w = random_legacy_rows(type, rows, k, 21);
      const std::vector<uint8_t> a = random_activation_rows(1, k, 22);
      const int64_t ws = af::row_bytes(type, k);
      for (int64_t j = 0; j < rows; ++j) {
        const float expect = defined_legacy_dot(type, k, w.data() + j * ws, a.data());
        const float got = q::ref::dot(slot, k, w.data() + j * ws, a.data());
        ASSERT_TRUE(same_bits(got, expect))
            << af::name(type) << " k=" << k << " row " << j << ": " << got << " vs " << expect;
      }
    }
  }
}

// Every table's legacy kernels at odd shapes: decode rows (m = 1), full tiles with row and column
// remainders, and k from one block to a Qwen2 down_proj row; random raw blocks (any scale, every
// quant value) as well as quantized data.
TEST(QuantKernels, LegacyTablesMatchTheReferenceAtOddShapes) {
  struct Shape2 {
    int64_t na, nw;
  };
  for (DType type : kLegacyTypes) {
    const q::QuantSlot slot = *q::quant_slot(type);
    for (int64_t k : {32, 64, 96, 4864}) {
      for (Shape2 shape : {Shape2{1, 37}, Shape2{7, 19}, Shape2{5, 9}}) {
        const int64_t na = shape.na, nw = shape.nw;
        const int64_t ws = af::row_bytes(type, k), as = af::row_bytes(DType::Q8_0, k);
        for (bool raw : {true, false}) {
          const std::vector<uint8_t> w = raw ? random_legacy_rows(type, nw, k, 31)
                                             : quantize_rows(type, test_values(nw, k, 32), nw, k);
          const std::vector<uint8_t> a =
              raw ? random_activation_rows(na, k, 33)
                  : quantize_rows(DType::Q8_0, test_values(na, k, 34), na, k);
          std::vector<float> expect(static_cast<size_t>(na * nw));
          for (int64_t i = 0; i < na; ++i) {
            for (int64_t j = 0; j < nw; ++j) {
              expect[i * nw + j] = q::ref::dot(slot, k, w.data() + j * ws, a.data() + i * as);
            }
          }
          for (const q::QuantKernels* t : tables()) {
            // ldy wider than nw: the kernels write only their outputs.
            const int64_t ldy = nw + 3;
            std::vector<float> y(static_cast<size_t>(na * ldy), -7.f);
            t->dot[slot](k, w.data(), ws, nw, a.data(), as, na, y.data(), ldy);
            for (int64_t i = 0; i < na; ++i) {
              for (int64_t j = 0; j < ldy; ++j) {
                const float want = j < nw ? expect[i * nw + j] : -7.f;
                ASSERT_TRUE(same_bits(y[i * ldy + j], want))
                    << t->isa << " " << af::name(type) << (raw ? " raw" : " quantized")
                    << " k=" << k << " na=" << na << " nw=" << nw << " (" << i << ", " << j
                    << "): " << y[i * ldy + j] << " vs " << want;
              }
            }
          }
        }
      }
    }
  }
}

// Rows of random K-quant blocks: every bit pattern of the quants and scales (the largest 6-bit
// scales and mins, Q6_K scale -128), with finite halves for d and dmin.
std::vector<uint8_t> random_k_blocks(DType type, int64_t rows, int64_t k, uint32_t seed) {
  const int64_t bytes = af::row_bytes(type, k) * rows;
  std::vector<uint8_t> out(static_cast<size_t>(bytes));
  std::mt19937 rng(seed);
  for (uint8_t& b : out) b = static_cast<uint8_t>(rng());
  const int64_t block_bytes = af::info(type).type_size;
  // Offsets of the halves d (and dmin) in the block.
  const std::vector<int64_t> halves =
      type == DType::Q6_K ? std::vector<int64_t>{208} : std::vector<int64_t>{0, 2};
  for (int64_t off = 0; off < bytes; off += block_bytes) {
    for (const int64_t h : halves) {
      const uint16_t half =
          af::f32_to_f16(std::ldexp(static_cast<float>(rng() % 1000) - 500.f, -16));
      std::memcpy(out.data() + off + h, &half, 2);
    }
  }
  return out;
}

// The prefill paths (weight panels, many activation rows) against the reference: odd row counts,
// panel remainders below and above 16 rows, and activation rows at the int8 limits.
TEST(QuantKernels, KQuantPrefillMatchesTheReferenceBitForBit) {
  for (DType type : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    const q::QuantSlot slot = *q::quant_slot(type);
    for (int64_t k : {256, 512, 4864}) {
      const int64_t nw = 53, max_rows = 130;
      for (bool random_bits : {false, true}) {
        if (random_bits && k > 512) continue;  // keeps the test short; the ranges are per block
        const std::vector<uint8_t> w = random_bits
                                           ? random_k_blocks(type, nw, k, 11)
                                           : quantize_rows(type, test_values(nw, k, 1), nw, k);
        std::vector<float> x = test_values(max_rows, k, 2);
        for (int64_t i = 0; i < k; ++i) x[i] = (i * 7 % 3 == 0) ? 1.f : -1.f;  // all +-127
        const std::vector<uint8_t> a = quantize_rows(DType::Q8_K, x, max_rows, k);
        const int64_t ws = af::row_bytes(type, k), as = af::row_bytes(DType::Q8_K, k);
        std::vector<float> ref(static_cast<size_t>(max_rows * nw));
        for (int64_t i = 0; i < max_rows; ++i) {
          for (int64_t j = 0; j < nw; ++j) {
            ref[i * nw + j] = q::ref::dot(slot, k, w.data() + j * ws, a.data() + i * as);
          }
        }
        for (const q::QuantKernels* t : tables()) {
          if (t == &q::scalar_quant_kernels()) continue;  // the reference itself
          for (int64_t rows : {1, 2, 3, 7, 17, 130}) {
            for (int64_t cols : {nw, int64_t{21}}) {
              std::vector<float> y(static_cast<size_t>(rows * nw), -1.f);
              t->dot[slot](k, w.data(), ws, cols, a.data(), as, rows, y.data(), nw);
              for (int64_t i = 0; i < rows; ++i) {
                for (int64_t j = 0; j < nw; ++j) {
                  const float expect = j < cols ? ref[i * nw + j] : -1.f;  // untouched past cols
                  ASSERT_TRUE(same_bits(y[i * nw + j], expect))
                      << t->isa << " " << af::name(type) << " k=" << k << " rows=" << rows
                      << " cols=" << cols << " random_bits=" << random_bits << " (" << i << ", "
                      << j << "): " << y[i * nw + j] << " vs " << expect;
                }
              }
            }
          }
        }
      }
    }
  }
}

TEST(QuantKernels, ActivationQuantizersMatchTheReferenceBytes) {
  const int64_t k = 256 * 5;
  std::vector<float> x = test_values(1, k, 9);
  for (int64_t i = 256; i < 512; ++i) x[i] = 0.f;  // an all-zero super-block
  for (int64_t i = 512; i < 768; ++i) x[i] = static_cast<float>(i % 9 - 4) * 0.25f;  // ties
  // Exact halves after scaling (the block maximum 127 makes the scale 1): rounding ties.
  for (int64_t i = 768; i < 1024; ++i) x[i] = static_cast<float>(i % 20) - 9.5f;
  x[768] = 127.f;
  x[800] = -127.f;
  x[700] = -1.0f;  // largest magnitude twice, negative first
  x[701] = 1.0f;
  for (const q::QuantKernels* t : tables()) {
    for (DType type : {DType::Q8_0, DType::Q8_K}) {
      const std::vector<uint8_t> expect = quantize_rows(type, x, 1, k);
      std::vector<uint8_t> got(expect.size(), 0xCD);
      (type == DType::Q8_0 ? t->quantize_q8_0 : t->quantize_q8_k)(x.data(), got.data(), k);
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_EQ(got[i], expect[i]) << t->isa << " " << af::name(type) << " byte " << i;
      }
    }
  }
}

TEST(QuantKernels, ReferenceDotIsCloseToTheFloatDot) {
  for (DType type : kTypes) {
    const q::QuantSlot slot = *q::quant_slot(type);
    const DType act_type = q::vec_dot_type(type);
    const int64_t k = 512;
    const std::vector<float> wf = af::test::random_floats(k, -1.f, 1.f, 3);
    const std::vector<float> xf = af::test::random_floats(k, -1.f, 1.f, 4);
    const std::vector<uint8_t> w = quantize_rows(type, wf, 1, k);
    const std::vector<uint8_t> a = quantize_rows(act_type, xf, 1, k);
    std::vector<float> wd(k), xd(k);
    af::quant::dequantize_row(type, w.data(), wd.data(), k);
    af::quant::dequantize_row(act_type, a.data(), xd.data(), k);
    double expect = 0, scale = 0;
    for (int64_t i = 0; i < k; ++i) {
      expect += static_cast<double>(wd[i]) * xd[i];
      scale += std::fabs(static_cast<double>(wd[i]) * xd[i]);
    }
    // The dot of the dequantized rows, up to float rounding.
    EXPECT_NEAR(q::ref::dot(slot, k, w.data(), a.data()), expect, 1e-5 * scale) << af::name(type);
  }
}

TEST(QuantMatmul, ResultsDoNotDependOnThreadCountOrIsa) {
  for (DType type : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q6_K, DType::Q5_K}) {
    const int64_t k = 512, n = 77;
    const std::vector<float> wf = test_values(n, k, 5);
    const std::vector<uint8_t> wq = quantize_rows(type, wf, n, k);
    Tensor w = Tensor::zeros(type, Shape{n, k});
    std::memcpy(w.mutable_data(), wq.data(), wq.size());
    const std::vector<float> bias = af::test::random_floats(n, -1.f, 1.f, 6);
    for (int64_t m : {1, 5, 9}) {
      const std::vector<float> x = af::test::random_floats(static_cast<size_t>(m * k), -2, 2, 7);
      std::vector<float> first;
      for (const char* isa : {"scalar", "avx2", "avx512"}) {
        if (std::string(isa) != "scalar" && !af::cpu::isa_supported(af::cpu::parse_isa(isa))) {
          continue;
        }
        for (int threads : {1, 2, 3}) {
          af::cpu::CpuBackend b({af::Device::cpu(), threads, isa});
          std::vector<float> y(static_cast<size_t>(m * n));
          b.matmul(x.data(), m, w, bias.data(), y.data());
          if (first.empty()) {
            first = y;
            continue;
          }
          for (size_t i = 0; i < y.size(); ++i) {
            ASSERT_TRUE(same_bits(y[i], first[i])) << af::name(type) << " m=" << m << " " << isa
                                                   << " threads=" << threads << " i=" << i;
          }
        }
      }
      // And the product is the quantized approximation of x · wᵀ + bias.
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
          double ref = bias[j], mag = std::fabs(bias[j]);
          for (int64_t t = 0; t < k; ++t) {
            ref += static_cast<double>(x[i * k + t]) * wf[j * k + t];
            mag += std::fabs(static_cast<double>(x[i * k + t]) * wf[j * k + t]);
          }
          ASSERT_NEAR(first[i * n + j], ref, 0.08 * mag) << af::name(type) << " " << i << "," << j;
        }
      }
    }
  }
}

TEST(QuantMatmul, QuantizedEmbeddingDequantizesRows) {
  const int64_t vocab = 6, dim = 256;
  for (DType type : {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K}) {
    const std::vector<uint8_t> tq = quantize_rows(type, test_values(vocab, dim, 8), vocab, dim);
    Tensor table = Tensor::zeros(type, Shape{vocab, dim});
    std::memcpy(table.mutable_data(), tq.data(), tq.size());
    af::cpu::CpuBackend b({af::Device::cpu(), 2, ""});
    const int32_t ids[] = {5, 0, 3};
    std::vector<float> y(3 * dim), expect(dim);
    b.embedding(table, ids, 3, y.data());
    const int64_t rb = af::row_bytes(type, dim);
    for (int r = 0; r < 3; ++r) {
      af::quant::dequantize_row(type, tq.data() + ids[r] * rb, expect.data(), dim);
      EXPECT_EQ(0, std::memcmp(expect.data(), y.data() + r * dim, dim * 4)) << af::name(type);
    }
  }
}

TEST(QuantMatmul, RejectsRowsThatAreNotWholeBlocks) {
  // Such a weight cannot even be built (the tensor's row size is checked), which is where the
  // error surfaces for a file's tensor.
  std::vector<float> x(600), y(4);
  try {
    const Tensor w = Tensor::zeros(DType::Q4_K, Shape{2, 300});
    af::cpu::CpuBackend b({af::Device::cpu(), 1, ""});
    b.matmul(x.data(), 1, w, nullptr, y.data());
    FAIL() << "expected af::Error";
  } catch (const af::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("q4_K"), std::string::npos) << msg;
    EXPECT_NE(msg.find("300"), std::string::npos) << msg;
  }
}

}  // namespace

namespace {

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = af::f32_to_bf16(v[i]);
  return out;
}

TEST(Bf16Dot, ActivationRoundingIsNearestEven) {
  if (!af::cpu::cpu_has_avx512_vnni_bf16()) GTEST_SKIP() << "no AVX512_BF16 on this CPU";
  for (int64_t k : {7, 32, 100, 901}) {  // whole 32-element steps and 16-element tails
    const std::vector<float> x = af::test::random_floats(k, -1, 1, 12);
    std::vector<uint16_t> xb(x.size());
    q::bf16_round_row(x.data(), xb.data(), k);
    EXPECT_EQ(xb, to_bf16(x)) << "k=" << k;
  }
}

// Checks y (m x n, row stride ldy, bias added when given) against the double-accumulated
// oracle within 1e-5 of the sum of |products|.
void expect_bf16_close(const std::vector<uint16_t>& w, const std::vector<uint16_t>& xb, int64_t ldx,
                       int64_t m, int64_t n, int64_t k, const float* bias, const float* y,
                       int64_t ldy, const std::string& what) {
  std::vector<uint16_t> xk(m * k);  // the oracle's rows are k long
  for (int64_t i = 0; i < m; ++i) {
    std::copy_n(xb.begin() + i * ldx, k, xk.begin() + i * k);
  }
  std::vector<float> expect(m * n);
  q::ref::bf16_dot_rows(k, w.data(), 0, n, xk.data(), m, expect.data(), n);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double mag = 0;
      for (int64_t t = 0; t < k; ++t) {
        mag += std::fabs(double{af::bf16_to_f32(xk[i * k + t])} *
                         double{af::bf16_to_f32(w[j * k + t])});
      }
      const double want = double{expect[i * n + j]} + (bias ? bias[j] : 0.0);
      ASSERT_NEAR(y[i * ldy + j], want, 1e-5 * mag + 1e-6 * std::fabs(want))
          << what << " i=" << i << " j=" << j;
    }
  }
}

TEST(Bf16Dot, PackLayoutPairsSixteenRowsPerChunk) {
  const int64_t n = 19, k = 7;  // two groups (the second with 3 rows), an odd k
  std::vector<uint16_t> w(n * k);
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<uint16_t>(i + 1);
  const int64_t pairs = q::bf16_pairs(k);
  ASSERT_EQ(pairs, 4);
  EXPECT_EQ(q::bf16_packed_bytes(n, k), 2 * 16 * pairs * 4);
  std::vector<uint32_t> packed(2 * 16 * pairs, 0xDEADBEEFu);
  q::bf16_pack(w.data(), n, k, 0, 2, 0, pairs, packed.data());
  for (int64_t g = 0; g < 2; ++g) {
    for (int64_t p = 0; p < pairs; ++p) {
      for (int64_t r = 0; r < 16; ++r) {
        const int64_t row = g * 16 + r;
        const uint32_t lo = row < n && 2 * p < k ? w[row * k + 2 * p] : 0;
        const uint32_t hi = row < n && 2 * p + 1 < k ? w[row * k + 2 * p + 1] : 0;
        ASSERT_EQ(packed[(g * pairs + p) * 16 + r], lo | hi << 16) << g << " " << p << " " << r;
      }
    }
  }
  // A sub-range of pairs of one group is the same words.
  std::vector<uint32_t> part(16 * 2);
  q::bf16_pack(w.data(), n, k, 1, 2, 1, 3, part.data());
  for (int64_t p = 1; p < 3; ++p) {
    for (int64_t r = 0; r < 16; ++r) {
      EXPECT_EQ(part[(p - 1) * 16 + r], packed[(pairs + p) * 16 + r]);
    }
  }
}

TEST(Bf16Dot, VectorPackEqualsTheLayoutFunction) {
  if (!af::cpu::cpu_has_avx512_vnni_bf16()) GTEST_SKIP() << "no AVX512_BF16 on this CPU";
  // k: under one 16-pair block, odd, and several blocks with a tail; n with a short last group.
  for (int64_t k : {9, 31, 32, 77, 900}) {
    for (int64_t n : {3, 16, 37}) {
      std::vector<uint16_t> w(n * k);
      for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<uint16_t>(i * 2654435761u >> 7);
      const int64_t groups = q::bf16_groups(n), pairs = q::bf16_pairs(k);
      for (auto [p0, p1] : {std::pair<int64_t, int64_t>{0, pairs}, {pairs / 3, pairs}}) {
        std::vector<uint32_t> a(groups * (p1 - p0) * 16, 1), b(a.size(), 2);
        q::bf16_pack(w.data(), n, k, 0, groups, p0, p1, a.data());
        q::bf16_pack_avx512(w.data(), n, k, 0, groups, p0, p1, b.data());
        EXPECT_EQ(a, b) << "k=" << k << " n=" << n << " p0=" << p0;
      }
    }
  }
}

TEST(Bf16Dot, PackedGemmMatchesTheReferencePrepackedOrNot) {
  if (!af::cpu::cpu_has_avx512_vnni_bf16()) GTEST_SKIP() << "no AVX512_BF16 on this CPU";
  // k: odd, below one cache block, several blocks with a short last one (kBlockPairs = 128).
  for (int64_t k : {7, 64, 301, 900}) {
    for (int64_t n : {5, 16, 75}) {  // 75: four full groups plus 11 rows, a tile and a tail tile
      const int64_t m = 13;          // two 6-row tiles and a 1-row tail
      const std::vector<uint16_t> w = to_bf16(af::test::random_floats(n * k, -1, 1, 21));
      const std::vector<float> bias = af::test::random_floats(n, -1, 1, 22);
      const std::vector<float> x = af::test::random_floats(m * k, -1, 1, 23);
      const int64_t ldx = 2 * q::bf16_pairs(k);
      std::vector<uint16_t> xb(m * ldx, 0);
      for (int64_t i = 0; i < m; ++i) q::bf16_round_row(x.data() + i * k, xb.data() + i * ldx, k);
      const int64_t groups = q::bf16_groups(n);
      std::vector<uint32_t> packed(q::bf16_packed_bytes(n, k) / 4);
      q::bf16_pack(w.data(), n, k, 0, groups, 0, q::bf16_pairs(k), packed.data());
      const int64_t ldy = n + 3;  // outputs past n must stay untouched
      for (const float* b : {static_cast<const float*>(nullptr), bias.data()}) {
        std::vector<float> pre(m * ldy, 7.f), fly(m * ldy, 7.f);
        q::bf16_packed_gemm(packed.data(), nullptr, n, k, 0, groups, xb.data(), ldx, 0, m, b,
                            pre.data(), ldy);
        // On the fly, in two row ranges and two group ranges (a task's view).
        const int64_t gsplit = groups / 2;
        for (auto [g0, g1] : {std::pair<int64_t, int64_t>{0, gsplit}, {gsplit, groups}}) {
          for (auto [i0, i1] : {std::pair<int64_t, int64_t>{0, 5}, {5, m}}) {
            q::bf16_packed_gemm(nullptr, w.data(), n, k, g0, g1, xb.data(), ldx, i0, i1, b,
                                fly.data(), ldy);
          }
        }
        const std::string what =
            "k=" + std::to_string(k) + " n=" + std::to_string(n) + (b ? " bias" : "");
        EXPECT_EQ(0, std::memcmp(pre.data(), fly.data(), pre.size() * 4)) << what;
        expect_bf16_close(w, xb, ldx, m, n, k, b, pre.data(), ldy, what);
        for (int64_t i = 0; i < m; ++i) {
          for (int64_t j = n; j < ldy; ++j) ASSERT_EQ(pre[i * ldy + j], 7.f) << what;
        }
      }
    }
  }
}

TEST(Bf16Dot, PreparedWeightGivesTheBitsOfTilesPackedDuringTheCall) {
  if (!af::cpu::cpu_has_avx512_vnni_bf16()) GTEST_SKIP() << "no AVX512_BF16 on this CPU";
  const int64_t n = 83, k = 257;
  const std::vector<uint16_t> wb = to_bf16(af::test::random_floats(n * k, -1, 1, 31));
  Tensor w = Tensor::zeros(DType::BF16, Shape{n, k});
  std::memcpy(w.mutable_data(), wb.data(), wb.size() * 2);
  const std::vector<float> bias = af::test::random_floats(n, -1, 1, 32);
  for (int threads : {1, 2, 3}) {
    af::BackendOptions opts{af::Device::cpu(), threads, ""};
    opts.bf16_dot = true;
    af::cpu::CpuBackend b(opts);
    const auto prepared = b.prepare_matmul_weight(w);
    ASSERT_NE(prepared, nullptr);
    for (int64_t m : {1, 3, 4, 40}) {
      const std::vector<float> x = af::test::random_floats(m * k, -1, 1, 33);
      std::vector<float> with(m * n), without(m * n);
      b.matmul(x.data(), m, w, bias.data(), with.data(), prepared.get());
      b.matmul(x.data(), m, w, bias.data(), without.data());
      std::vector<uint16_t> xb(m * k);
      q::bf16_round_row(x.data(), xb.data(), m * k);
      expect_bf16_close(wb, xb, k, m, n, k, bias.data(), with.data(), n,
                        "m=" + std::to_string(m) + " threads=" + std::to_string(threads));
      // An unprepared weight is packed tile by tile: the same sums in the same order.
      EXPECT_EQ(0, std::memcmp(with.data(), without.data(), with.size() * 4)) << m;
    }
  }
  // A backend without bf16 dot products ignores a bf16-packed weight and computes exactly.
  af::BackendOptions opts{af::Device::cpu(), 1, ""};
  opts.bf16_dot = true;
  const auto prepared = af::cpu::CpuBackend(opts).prepare_matmul_weight(w);
  af::cpu::CpuBackend exact({af::Device::cpu(), 1, ""});
  const std::vector<float> x = af::test::random_floats(2 * k, -1, 1, 34);
  std::vector<float> a(2 * n), b(2 * n);
  exact.matmul(x.data(), 2, w, nullptr, a.data(), prepared.get());
  exact.matmul(x.data(), 2, w, nullptr, b.data());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4));
}

TEST(Bf16Dot, OptInBackendIsCloseToTheExactPathAndThreadIndependent) {
  if (!af::cpu::cpu_has_avx512_vnni_bf16()) GTEST_SKIP() << "no AVX512_BF16 on this CPU";
  const int64_t n = 37, k = 300, m = 6;
  const std::vector<uint16_t> wb = to_bf16(af::test::random_floats(n * k, -1, 1, 13));
  Tensor w = Tensor::zeros(DType::BF16, Shape{n, k});
  std::memcpy(w.mutable_data(), wb.data(), wb.size() * 2);
  const std::vector<float> x = af::test::random_floats(m * k, -1, 1, 14);
  std::vector<float> exact(m * n), first;
  af::cpu::CpuBackend({af::Device::cpu(), 1, ""}).matmul(x.data(), m, w, nullptr, exact.data());
  for (int threads : {1, 2, 3}) {
    af::BackendOptions opts{af::Device::cpu(), threads, ""};
    opts.bf16_dot = true;
    af::cpu::CpuBackend b(opts);
    std::vector<float> y(m * n);
    b.matmul(x.data(), m, w, nullptr, y.data());
    if (first.empty()) first = y;
    EXPECT_EQ(0, std::memcmp(first.data(), y.data(), y.size() * 4)) << threads;
    for (size_t i = 0; i < y.size(); ++i) {
      // bf16 activations: relative error 2^-9 per element, a few sigma over k terms.
      EXPECT_NEAR(y[i], exact[i], 0.05) << i;
    }
    EXPECT_NE(0, std::memcmp(exact.data(), y.data(), y.size() * 4)) << "the opt-in path ran";
  }
}

}  // namespace
