// The 8-row packed layout for CPUs without AVX-512 (quant/packed8.hpp): the AVX2 and AVX-VNNI
// kernels against the scalar block-sum reference bit for bit at odd sizes, the packer's bytes,
// and the "avx2" backend that packs its tiles during prefills.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "af/backend/quant.hpp"
#include "af/core/error.hpp"
#include "af/core/half.hpp"
#include "af/core/tensor.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/dispatch.hpp"
#include "backend/cpu/quant/blocks.hpp"
#include "backend/cpu/quant/packed8.hpp"
#include "backend/cpu/quant/quant_kernels.hpp"
#include "quant_test_util.hpp"

namespace {

using af::DType;
using af::Shape;
using af::Tensor;
namespace q = af::cpu::quant;
namespace p8 = af::cpu::quant::packed8;

const DType kTypes[] = {DType::Q4_0, DType::Q8_0};

using af::test::same_bits;
std::vector<float> values(int64_t rows, int64_t k, uint32_t seed) {
  return af::test::spread_values(rows, k, seed);
}
std::vector<uint8_t> quantized(DType type, const std::vector<float>& x, int64_t rows, int64_t k) {
  return af::test::quantize_rows(type, x, rows, k);
}

std::vector<p8::GemmFn> kernels(DType type) {
  std::vector<p8::GemmFn> fns;
  if (af::cpu::isa_supported(af::cpu::Isa::kAvx2)) fns.push_back(p8::avx2_gemm(type));
  if (af::cpu::cpu_has_avx_vnni()) fns.push_back(p8::avxvnni_gemm(type));
  return fns;
}

TEST(QuantPacked8, PackerPutsEachRowsBytesInItsLanes) {
  const int64_t n = 11, k = 64;  // a full group and a tail of 3 rows
  for (DType type : kTypes) {
    std::vector<uint8_t> w = quantized(type, values(n, k, 3), n, k);
    const int64_t groups = p8::group_count(n), nb = k / 32;
    const int64_t gb = p8::group_block_bytes(type), bb = gb / p8::kGroupRows;
    EXPECT_EQ(gb, 8 * af::row_bytes(type, 32));
    std::vector<uint8_t> packed(static_cast<size_t>(groups * nb * gb), 0xAB);
    p8::pack_groups(type, w.data(), n, k, 0, groups, packed.data());
    const int chunks = type == DType::Q8_0 ? 8 : 4;
    for (int64_t g = 0; g < groups; ++g) {
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* pb = packed.data() + (g * nb + b) * gb;
        for (int r = 0; r < p8::kGroupRows; ++r) {
          const int64_t row = g * p8::kGroupRows + r;
          const uint8_t* src = row < n ? w.data() + row * nb * bb + b * bb : nullptr;
          for (int e = 0; e < 2; ++e) EXPECT_EQ(pb[2 * r + e], src ? src[e] : 0);
          for (int c = 0; c < chunks; ++c) {
            for (int e = 0; e < 4; ++e) {
              EXPECT_EQ(pb[16 + 32 * c + 4 * r + e], src ? src[2 + 4 * c + e] : 0)
                  << af::name(type) << " group " << g << " block " << b << " row " << r;
            }
          }
        }
      }
    }
  }
}

TEST(QuantPacked8, KernelsMatchTheReferenceBitForBitAtOddSizes) {
  if (!af::cpu::isa_supported(af::cpu::Isa::kAvx2)) GTEST_SKIP() << "no AVX2 on this CPU";
  const int64_t ks[] = {32, 96, 896, 4864};
  for (DType type : kTypes) {
    for (int64_t k : ks) {
      for (int64_t n : {int64_t{5}, int64_t{16}, int64_t{45}}) {
        std::vector<uint8_t> w = quantized(type, values(n, k, static_cast<uint32_t>(n + k)), n, k);
        if (type == DType::Q8_0) {  // a file may hold -128, which our quantizer never writes
          reinterpret_cast<af::quant::BlockQ8_0*>(w.data())[0].qs[3] = -128;
        }
        const int64_t groups = p8::group_count(n), nb = k / 32;
        const int64_t group_bytes = nb * p8::group_block_bytes(type);
        std::vector<uint8_t> packed(static_cast<size_t>(groups * group_bytes));
        p8::pack_groups(type, w.data(), n, k, 0, groups, packed.data());
        const std::vector<float> bias = af::test::random_floats(static_cast<size_t>(n), -1, 1, 4);
        for (int64_t m : {1, 2, 3, 4, 5, 13}) {
          const std::vector<uint8_t> a8 = quantized(DType::Q8_0, values(m, k, 9), m, k);
          std::vector<int8_t> qs(static_cast<size_t>(m * k));
          std::vector<float> d(static_cast<size_t>(m * nb)), asum(d.size());
          std::vector<int32_t> offset(d.size());
          const int64_t ab = af::row_bytes(DType::Q8_0, k);
          for (int64_t i = 0; i < m; ++i) {
            q::packed::split_activation_row(type, a8.data() + i * ab, k, qs.data() + i * k,
                                            d.data() + i * nb, offset.data() + i * nb,
                                            asum.data() + i * nb);
          }
          const q::packed::Activations acts{qs.data(), d.data(), offset.data(), asum.data(), k};
          const int64_t wb = af::row_bytes(type, k);
          for (const float* b : {static_cast<const float*>(nullptr), bias.data()}) {
            for (p8::GemmFn fn : kernels(type)) {
              const int64_t ldy = n + 2;  // columns past n stay untouched
              std::vector<float> y(static_cast<size_t>(m * ldy), -7.f);
              // In two group ranges and two row ranges, as tasks see it.
              const int64_t gs = groups / 2, ms = m / 2;
              for (auto [g0, g1] : {std::pair<int64_t, int64_t>{0, gs}, {gs, groups}}) {
                for (auto [i0, i1] : {std::pair<int64_t, int64_t>{0, ms}, {ms, m}}) {
                  if (g0 == g1 || i0 == i1) continue;
                  fn(packed.data() + g0 * group_bytes, g0, g1, n, acts, i0, i1, b, y.data(), ldy);
                }
              }
              for (int64_t i = 0; i < m; ++i) {
                for (int64_t j = 0; j < n; ++j) {
                  float ref =
                      q::ref::dot(*q::quant_slot(type), k, w.data() + j * wb, a8.data() + i * ab);
                  if (b) ref += b[j];
                  ASSERT_TRUE(same_bits(y[static_cast<size_t>(i * ldy + j)], ref))
                      << af::name(type) << " k=" << k << " n=" << n << " m=" << m << " (" << i
                      << ", " << j << ")" << (b ? " bias" : "")
                      << (fn == p8::avx2_gemm(type) ? " avx2" : " avxvnni") << ": "
                      << y[static_cast<size_t>(i * ldy + j)] << " vs " << ref;
                }
                for (int64_t j = n; j < ldy; ++j)
                  ASSERT_EQ(y[static_cast<size_t>(i * ldy + j)], -7.f);
              }
            }
          }
        }
      }
    }
  }
}

// The "avx2" backend packs Q4_0 and Q8_0 tiles into this layout during prefills (4+ rows) and
// streams the GGUF rows in decode: the reference's bits either way, at any thread count.
TEST(QuantPacked8, TheAvx2BackendMatchesTheReference) {
  if (!af::cpu::isa_supported(af::cpu::Isa::kAvx2)) GTEST_SKIP() << "no AVX2 on this CPU";
  const int64_t n = 45, k = 896;
  for (DType type : kTypes) {
    Tensor w = Tensor::zeros(type, Shape{n, k});
    const std::vector<uint8_t> rows = quantized(type, values(n, k, 21), n, k);
    std::memcpy(w.mutable_data(), rows.data(), rows.size());
    const std::vector<float> bias = af::test::random_floats(static_cast<size_t>(n), -1, 1, 22);
    for (int threads : {1, 2, 3}) {
      af::cpu::CpuBackend be({af::Device::cpu(), threads, "avx2"});
      EXPECT_EQ(be.prepare_matmul_weight(w), nullptr) << af::name(type);
      for (int64_t m : {1, 3, 7, 70}) {
        const std::vector<float> x = values(m, k, static_cast<uint32_t>(m));
        const std::vector<uint8_t> a8 = quantized(DType::Q8_0, x, m, k);
        std::vector<float> y(static_cast<size_t>(m * n), -7.f);
        be.matmul(x.data(), m, w, bias.data(), y.data());
        const int64_t wb = af::row_bytes(type, k), ab = af::row_bytes(DType::Q8_0, k);
        for (int64_t i = 0; i < m; ++i) {
          for (int64_t j = 0; j < n; ++j) {
            const float ref =
                q::ref::dot(*q::quant_slot(type), k, rows.data() + j * wb, a8.data() + i * ab) +
                bias[static_cast<size_t>(j)];
            ASSERT_TRUE(same_bits(y[static_cast<size_t>(i * n + j)], ref))
                << af::name(type) << " m=" << m << " threads=" << threads << " (" << i << ", " << j
                << ")";
          }
        }
      }
    }
  }
}

}  // namespace
