// K-quant weights repacked at load (quant/kpacked.hpp): the AVX-512 VNNI, AVX-VNNI and AVX2
// kernels of Q2_K .. Q6_K against the scalar K-quant reference bit for bit at odd sizes, on
// quantized and on random block bytes (every scale, min and high-bit pattern), and through
// prepare_matmul_weight + matmul.
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "af/backend/quant.hpp"
#include "af/core/tensor.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/dispatch.hpp"
#include "backend/cpu/packed_weight.hpp"
#include "backend/cpu/quant/blocks.hpp"
#include "backend/cpu/quant/kpacked.hpp"
#include "backend/cpu/quant/quant_kernels.hpp"
#include "quant_test_util.hpp"

namespace {

using af::DType;
using af::Shape;
using af::Tensor;
namespace q = af::cpu::quant;
namespace kp = af::cpu::quant::kpacked;

const DType kTypes[] = {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K};

bool has_vnni() { return af::cpu::cpu_has_avx512_vnni_bf16(); }

// Every kernel of the layout, with whether this CPU runs it.
struct Kernel {
  const char* name;
  bool supported;
  kp::GemmFn (*gemm)(DType);
};
std::vector<Kernel> kernels() {
  return {{"avx512vnni", has_vnni(), &kp::avx512vnni_gemm},
          {"avxvnni", af::cpu::cpu_has_avx_vnni(), &kp::avxvnni_gemm},
          {"avx2", af::cpu::isa_supported(af::cpu::Isa::kAvx2), &kp::avx2_gemm}};
}

// n rows of k elements: the reference quantizer's blocks, or (random_bytes) random block bytes
// with finite fp16 scales, so every 6-bit scale / min, fifth and sixth bit pattern occurs.
std::vector<uint8_t> weight_rows(DType type, int64_t n, int64_t k, bool random_bytes,
                                 uint32_t seed) {
  if (!random_bytes) {
    return af::test::quantize_rows(type, af::test::spread_values(n, k, seed), n, k);
  }
  std::mt19937 rng(seed);
  std::vector<uint8_t> w(static_cast<size_t>(n * af::row_bytes(type, k)));
  for (uint8_t& b : w) b = static_cast<uint8_t>(rng());
  // Halves with exponents 0x0e..0x11 (about 0.002-0.03), either sign.
  const auto half = [&] {
    return static_cast<uint16_t>(((rng() % 4 + 0xe) << 10) | (rng() & 0x83ff));
  };
  const int64_t nblocks = n * k / 256;
  for (int64_t b = 0; b < nblocks; ++b) {
    if (type == DType::Q6_K) {
      auto* blk = reinterpret_cast<af::quant::BlockQ6_K*>(w.data()) + b;
      blk->d = half();
      if (b == 0) blk->scales[3] = -128;  // the extreme scale
    } else if (type == DType::Q2_K) {
      auto* blk = reinterpret_cast<af::quant::BlockQ2_K*>(w.data()) + b;
      blk->d = half();
      blk->dmin = half();
    } else if (type == DType::Q3_K) {
      auto* blk = reinterpret_cast<af::quant::BlockQ3_K*>(w.data()) + b;
      blk->d = half();
      if (b == 0) {  // the extreme scales: -32 for sub-block 0, +31 for sub-block 15
        blk->scales[0] &= 0xf0;
        blk->scales[8] &= 0xfc;
        blk->scales[7] |= 0xf0;
        blk->scales[11] |= 0xc0;
      }
    } else if (type == DType::Q4_K) {
      auto* blk = reinterpret_cast<af::quant::BlockQ4_K*>(w.data()) + b;
      blk->d = half();
      blk->dmin = half();
    } else {
      auto* blk = reinterpret_cast<af::quant::BlockQ5_K*>(w.data()) + b;
      blk->d = half();
      blk->dmin = half();
    }
  }
  return w;
}

// y[m, n] must equal the reference dot products (plus bias) bit for bit.
void expect_reference(DType type, const std::vector<uint8_t>& w, int64_t n, int64_t k,
                      const std::vector<uint8_t>& a, int64_t m, const float* bias,
                      const std::vector<float>& y, const std::string& what) {
  const int64_t wb = af::row_bytes(type, k), ab = af::row_bytes(DType::Q8_K, k);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      float ref = q::ref::dot(*q::quant_slot(type), k, w.data() + j * wb, a.data() + i * ab);
      if (bias) ref += bias[j];
      const float got = y[static_cast<size_t>(i * n + j)];
      ASSERT_TRUE(af::test::same_bits(got, ref))
          << what << " (" << i << ", " << j << "): " << got << " vs " << ref;
    }
  }
}

// Every kernel this CPU runs (the 256-bit ones on AVX2 / AVX-VNNI CPUs, as under qemu -cpu
// Haswell) against the scalar reference.
void expect_kernel_matches_reference(const Kernel& kernel) {
  struct Case {
    int64_t n, k, m;
  };
  // n = 37: two full groups and a tail of 5; m = 5 and 9: tiles of 4 rows plus a remainder.
  const Case cases[] = {{37, 256, 1}, {16, 512, 3}, {45, 768, 5}, {1, 256, 2}, {33, 1536, 9}};
  for (DType type : kTypes) {
    for (const Case& c : cases) {
      for (bool random_bytes : {false, true}) {
        const auto seed = static_cast<uint32_t>(c.n * 7 + c.k + c.m);
        const std::vector<uint8_t> w = weight_rows(type, c.n, c.k, random_bytes, seed);
        const std::vector<uint8_t> a = af::test::quantize_rows(
            DType::Q8_K, af::test::spread_values(c.m, c.k, seed + 1), c.m, c.k);
        const int64_t groups = kp::group_count(c.n);
        std::vector<uint8_t> packed(
            static_cast<size_t>(groups * c.k / 256 * kp::group_block_bytes(type)));
        kp::pack_groups(type, w.data(), c.n, c.k, 0, groups, packed.data());
        const std::vector<float> bias =
            af::test::random_floats(static_cast<size_t>(c.n), -1, 1, seed);
        for (const float* b : {static_cast<const float*>(nullptr), bias.data()}) {
          std::vector<float> y(static_cast<size_t>(c.m * c.n), -7.f);
          kernel.gemm(type)(packed.data(), 0, groups, c.n, c.k, a.data(),
                            af::row_bytes(DType::Q8_K, c.k), 0, c.m, b, y.data(), c.n);
          expect_reference(type, w, c.n, c.k, a, c.m, b, y,
                           std::string(kernel.name) + " " + std::string(af::name(type)) +
                               " n=" + std::to_string(c.n) + " k=" + std::to_string(c.k) +
                               " m=" + std::to_string(c.m) + (random_bytes ? " random bytes" : "") +
                               (b ? " bias" : ""));
        }
      }
    }
  }
}

TEST(QuantKPacked, KernelsMatchTheReferenceBitForBitAtOddSizes) {
  int ran = 0;
  for (const Kernel& kernel : kernels()) {
    if (!kernel.supported) continue;
    SCOPED_TRACE(kernel.name);
    expect_kernel_matches_reference(kernel);
    ++ran;
  }
  if (ran == 0) GTEST_SKIP() << "no AVX2 on this CPU";
}

// A prefill kernel (panels unpacked once for all rows) against the reference: odd weight row
// counts (a panel of one group, partial last groups), m in {2, 3, 7, 17, 64} (3- and 4-row
// steps and their remainders), row and group sub-ranges as the planner hands them out, with
// and without bias, on quantized and on random block bytes.
void expect_prefill_matches_reference(kp::GemmFn gemm, DType type, const std::string& kernel) {
  struct Case {
    int64_t n, k, m;
  };
  const Case cases[] = {{37, 256, 2}, {53, 512, 3}, {17, 768, 7}, {45, 512, 17}, {33, 256, 64}};
  for (const Case& c : cases) {
    for (bool random_bytes : {false, true}) {
      const auto seed = static_cast<uint32_t>(c.n * 5 + c.k + c.m);
      const std::vector<uint8_t> w = weight_rows(type, c.n, c.k, random_bytes, seed);
      const std::vector<uint8_t> a = af::test::quantize_rows(
          DType::Q8_K, af::test::spread_values(c.m, c.k, seed + 1), c.m, c.k);
      const int64_t groups = kp::group_count(c.n);
      const int64_t group_bytes = c.k / 256 * kp::group_block_bytes(type);
      std::vector<uint8_t> packed(static_cast<size_t>(groups * group_bytes));
      kp::pack_groups(type, w.data(), c.n, c.k, 0, groups, packed.data());
      const std::vector<float> bias =
          af::test::random_floats(static_cast<size_t>(c.n), -1, 1, seed);
      const std::string what = kernel + " " + std::string(af::name(type)) +
                               " n=" + std::to_string(c.n) + " k=" + std::to_string(c.k) +
                               " m=" + std::to_string(c.m) + (random_bytes ? " random bytes" : "");
      for (const float* b : {static_cast<const float*>(nullptr), bias.data()}) {
        std::vector<float> y(static_cast<size_t>(c.m * c.n), -7.f);
        // Group 0 alone (a one-group panel), then the rest; rows split at an odd row.
        const int64_t i_mid = c.m / 2 + 1;
        for (const auto& [g0, g1] : {std::pair<int64_t, int64_t>{0, 1}, {1, groups}}) {
          for (const auto& [i0, i1] : {std::pair<int64_t, int64_t>{0, i_mid}, {i_mid, c.m}}) {
            gemm(packed.data() + g0 * group_bytes, g0, g1, c.n, c.k, a.data(),
                 af::row_bytes(DType::Q8_K, c.k), i0, i1, b, y.data(), c.n);
          }
        }
        expect_reference(type, w, c.n, c.k, a, c.m, b, y, what + (b ? " bias" : ""));
      }
    }
  }
}

TEST(QuantKPacked, PrefillKernelMatchesTheReferenceBitForBit) {
  if (!has_vnni()) GTEST_SKIP() << "no AVX-512 VNNI on this CPU";
  for (DType type : kTypes) {
    // Every packable type has one (Q2_K / Q3_K: kpacked_q23_prefill_avx512vnni.cpp).
    const kp::GemmFn gemm = kp::avx512vnni_prefill_gemm(type);
    ASSERT_NE(gemm, nullptr) << af::name(type);
    expect_prefill_matches_reference(gemm, type, "avx512vnni");
  }
}

// The 256-bit prefill kernels (kpacked_q23_prefill_simd256.hpp: Q2_K and Q3_K, null for the
// other types) that this CPU runs; qemu -cpu Haswell runs the AVX2 one.
TEST(QuantKPacked, Prefill256KernelsMatchTheReferenceBitForBit) {
  const struct {
    const char* name;
    bool supported;
    kp::GemmFn (*prefill)(DType);
  } kernels256[] = {{"avxvnni", af::cpu::cpu_has_avx_vnni(), &kp::avxvnni_prefill_gemm},
                    {"avx2", af::cpu::isa_supported(af::cpu::Isa::kAvx2), &kp::avx2_prefill_gemm}};
  int ran = 0;
  for (const auto& kernel : kernels256) {
    if (!kernel.supported) continue;
    for (DType type : kTypes) {
      const kp::GemmFn gemm = kernel.prefill(type);
      if (type != DType::Q2_K && type != DType::Q3_K) {
        EXPECT_EQ(gemm, nullptr) << kernel.name << " " << af::name(type);
        continue;
      }
      ASSERT_NE(gemm, nullptr) << kernel.name << " " << af::name(type);
      expect_prefill_matches_reference(gemm, type, kernel.name);
    }
    ++ran;
  }
  if (ran == 0) GTEST_SKIP() << "no AVX2 on this CPU";
}

// The Q6_K prefill kernel sums each 8 values of (q - 32) * a in an int16 word before scaling:
// its extremes (q = 0 or 63 against a = -127 or 127 throughout, scales -128 and 127) must still
// give the reference's bits.
TEST(QuantKPacked, PrefillKernelQ6KExactAtTheInt16Extremes) {
  if (!has_vnni()) GTEST_SKIP() << "no AVX-512 VNNI on this CPU";
  const int64_t n = 35, k = 512, m = 7;
  // Rows alternate all q = 0 (ql, qh zero) and all q = 63 (every bit set).
  std::vector<uint8_t> w(static_cast<size_t>(n * af::row_bytes(DType::Q6_K, k)));
  auto* blocks = reinterpret_cast<af::quant::BlockQ6_K*>(w.data());
  for (int64_t i = 0; i < n * k / 256; ++i) {
    const uint8_t bits = (i / (k / 256)) % 2 == 0 ? 0x00 : 0xFF;
    std::memset(blocks[i].ql, bits, sizeof(blocks[i].ql));
    std::memset(blocks[i].qh, bits, sizeof(blocks[i].qh));
    for (int j = 0; j < 16; ++j) blocks[i].scales[j] = static_cast<int8_t>(j % 2 == 0 ? -128 : 127);
    blocks[i].d = 0x2e66;  // about 0.1
  }
  // Activation rows of one sign (every value -127 or 127 after quantization), then rows whose
  // sign flips every 8 values.
  std::vector<float> x(static_cast<size_t>(m * k));
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t i = 0; i < k; ++i) {
      const bool negative = r < 4 ? r % 2 == 0 : (i / 8 + r) % 2 == 0;
      x[static_cast<size_t>(r * k + i)] = negative ? -1.f : 1.f;
    }
  }
  const std::vector<uint8_t> a = af::test::quantize_rows(DType::Q8_K, x, m, k);
  const int64_t groups = kp::group_count(n);
  std::vector<uint8_t> packed(
      static_cast<size_t>(groups * k / 256 * kp::group_block_bytes(DType::Q6_K)));
  kp::pack_groups(DType::Q6_K, w.data(), n, k, 0, groups, packed.data());
  std::vector<float> y(static_cast<size_t>(m * n), -7.f);
  kp::avx512vnni_prefill_gemm(DType::Q6_K)(packed.data(), 0, groups, n, k, a.data(),
                                           af::row_bytes(DType::Q8_K, k), 0, m, nullptr, y.data(),
                                           n);
  expect_reference(DType::Q6_K, w, n, k, a, m, nullptr, y, "Q6_K extremes");
}

TEST(QuantKPacked, PackedSizeEqualsTheGgufSizeAndGroupRangesLandAtDst) {
  for (DType type : kTypes) {
    const int64_t n = 45, k = 512;
    const std::vector<uint8_t> w = weight_rows(type, n, k, true, 3);
    // Three groups of 16 rows take the bytes of 48 GGUF rows: no growth but the padding.
    EXPECT_EQ(kp::group_block_bytes(type) * (k / 256), 16 * af::row_bytes(type, k));
    const int64_t groups = kp::group_count(n);
    const size_t group_bytes = static_cast<size_t>(k / 256 * kp::group_block_bytes(type));
    std::vector<uint8_t> all(groups * group_bytes), tail((groups - 1) * group_bytes);
    kp::pack_groups(type, w.data(), n, k, 0, groups, all.data());
    kp::pack_groups(type, w.data(), n, k, 1, groups, tail.data());
    EXPECT_EQ(0, std::memcmp(tail.data(), all.data() + group_bytes, tail.size())) << af::name(type);
  }
}

// The backend prepares K-quant weights in the packed layout and its matmuls (decode and
// prefill, with and without bias) keep the reference bits: with the best kernels and with the
// AVX2 table (the AVX-VNNI kernels where the CPU has them, else the AVX2 ones).
void expect_prepared_matmul_matches_reference(const char* isa) {
  const int64_t n = 53, k = 768;
  for (DType type : kTypes) {
    const std::vector<uint8_t> bytes = weight_rows(type, n, k, false, 11);
    Tensor w = Tensor::zeros(type, Shape{n, k});
    std::memcpy(w.mutable_data(), bytes.data(), bytes.size());
    const std::vector<float> bias = af::test::random_floats(static_cast<size_t>(n), -1, 1, 5);
    for (int threads : {1, 2}) {
      af::cpu::CpuBackend be({af::Device::cpu(), threads, isa});
      const auto prepared = be.prepare_matmul_weight(w);
      const auto* pw = dynamic_cast<const af::cpu::PackedWeight*>(prepared.get());
      ASSERT_NE(pw, nullptr) << af::name(type);
      EXPECT_EQ(pw->layout(), af::cpu::PackedWeight::Layout::kKQuantBlocks);
      EXPECT_EQ(static_cast<int64_t>(pw->size()), 4 * 16 * af::row_bytes(type, k));
      for (int64_t m : {int64_t{1}, int64_t{7}, int64_t{70}}) {
        const std::vector<float> x = af::test::spread_values(m, k, static_cast<uint32_t>(m));
        const std::vector<uint8_t> a = af::test::quantize_rows(DType::Q8_K, x, m, k);
        for (const float* b : {static_cast<const float*>(nullptr), bias.data()}) {
          std::vector<float> y(static_cast<size_t>(m * n), -7.f);
          be.matmul(x.data(), m, w, b, y.data(), prepared.get());
          expect_reference(type, bytes, n, k, a, m, b, y,
                           std::string(af::name(type)) + " threads=" + std::to_string(threads) +
                               " m=" + std::to_string(m) + (b ? " bias" : ""));
        }
      }
    }
  }
}

TEST(QuantKPacked, PreparedMatmulMatchesTheReference) {
  if (!af::cpu::isa_supported(af::cpu::Isa::kAvx2)) GTEST_SKIP() << "no AVX2 on this CPU";
  for (const char* isa : {"", "avx2"}) {
    SCOPED_TRACE(std::string("isa ") + isa);
    expect_prepared_matmul_matches_reference(isa);
  }
}

}  // namespace
