// The dense packed layout (kernels/dense_packed.hpp): the AVX-512 repacking equals the scalar
// layout function, and the packed matmul equals its scalar oracle bit for bit (each output one
// fma chain along k), through the backend at any thread count too.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "af/core/half.hpp"
#include "af/core/tensor.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/dispatch.hpp"
#include "backend/cpu/kernels/dense_packed.hpp"
#include "test_util.hpp"

namespace {

using af::DType;
using af::Shape;
using af::Tensor;
using af::cpu::WeightType;
namespace dense = af::cpu::dense;

bool has_avx512() { return af::cpu::isa_supported(af::cpu::Isa::kAvx512); }

struct TypeCase {
  WeightType wt;
  DType dtype;
  const char* name;
};
constexpr TypeCase kTypes[] = {{WeightType::kF32, DType::F32, "f32"},
                               {WeightType::kF16, DType::F16, "f16"},
                               {WeightType::kBF16, DType::BF16, "bf16"}};

// A random n x k weight of the case's type.
Tensor weight(const TypeCase& c, int64_t n, int64_t k, uint32_t seed) {
  const std::vector<float> v = af::test::random_floats(static_cast<size_t>(n * k), -1, 1, seed);
  Tensor t = Tensor::zeros(c.dtype, Shape{n, k});
  for (size_t i = 0; i < v.size(); ++i) {
    if (c.wt == WeightType::kF32) {
      std::memcpy(t.mutable_data() + 4 * i, &v[i], 4);
    } else {
      const uint16_t h = c.wt == WeightType::kF16 ? af::f32_to_f16(v[i]) : af::f32_to_bf16(v[i]);
      std::memcpy(t.mutable_data() + 2 * i, &h, 2);
    }
  }
  return t;
}

TEST(DensePacked, LayoutOfEachType) {
  const int64_t n = 18, k = 5;  // a short second group, an odd k
  for (const TypeCase& c : kTypes) {
    const Tensor w = weight(c, n, k, 1);
    const int64_t chunks = dense::group_chunks(c.wt, k);
    EXPECT_EQ(chunks, c.wt == WeightType::kF32 ? 5 : 3) << c.name;
    std::vector<uint8_t> p(static_cast<size_t>(dense::packed_bytes(c.wt, n, k)), 0xAB);
    ASSERT_EQ(static_cast<int64_t>(p.size()), 2 * chunks * 64);
    dense::pack(c.wt, w.data(), n, k, 0, 2, 0, chunks, p.data());
    for (int64_t row = 0; row < 32; ++row) {
      for (int64_t t = 0; t < k + 1; ++t) {
        const int64_t g = row / 16, r = row % 16;
        if (c.wt == WeightType::kF32) {
          if (t == k) continue;
          float got, want = 0;
          std::memcpy(&got, p.data() + (g * chunks + t) * 64 + 4 * r, 4);
          if (row < n) std::memcpy(&want, w.data() + 4 * (row * k + t), 4);
          ASSERT_EQ(got, want) << c.name << " " << row << " " << t;
        } else {
          uint16_t got, want = 0;
          std::memcpy(&got, p.data() + (g * chunks + t / 2) * 64 + 32 * (t % 2) + 2 * r, 2);
          if (row < n && t < k) std::memcpy(&want, w.data() + 2 * (row * k + t), 2);
          ASSERT_EQ(got, want) << c.name << " " << row << " " << t;
        }
      }
    }
  }
}

TEST(DensePacked, VectorPackEqualsTheLayoutFunction) {
  if (!has_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
  for (const TypeCase& c : kTypes) {
    for (int64_t k : {3, 32, 33, 70, 900}) {
      for (int64_t n : {7, 16, 35}) {
        const Tensor w = weight(c, n, k, 2);
        const int64_t groups = dense::group_count(n), chunks = dense::group_chunks(c.wt, k);
        for (auto [c0, c1] : {std::pair<int64_t, int64_t>{0, chunks}, {chunks / 3, chunks}}) {
          const size_t bytes = static_cast<size_t>(groups * (c1 - c0) * 64);
          std::vector<uint8_t> a(bytes, 1), b(bytes, 2);
          dense::pack(c.wt, w.data(), n, k, 0, groups, c0, c1, a.data());
          dense::pack_avx512(c.wt, w.data(), n, k, 0, groups, c0, c1, b.data());
          EXPECT_EQ(a, b) << c.name << " k=" << k << " n=" << n << " c0=" << c0;
        }
      }
    }
  }
}

TEST(DensePacked, MatmulEqualsTheOracleBitForBit) {
  if (!has_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
  for (const TypeCase& c : kTypes) {
    // k: odd, under one cache block, several blocks with a short last one (1024 / 2048
    // elements), odd over several blocks.
    for (int64_t k : {7, 64, 301, 2500, 4097}) {
      for (int64_t n : {5, 16, 75}) {  // 75: a 4-group tile and a tile of one short group
        const int64_t m = 13;          // two 6-row tiles and a 1-row tail
        const Tensor w = weight(c, n, k, 3);
        const std::vector<float> x = af::test::random_floats(m * k, -1, 1, 4);
        const std::vector<float> bias = af::test::random_floats(n, -1, 1, 5);
        const int64_t groups = dense::group_count(n), chunks = dense::group_chunks(c.wt, k);
        std::vector<uint8_t> p(static_cast<size_t>(dense::packed_bytes(c.wt, n, k)));
        dense::pack(c.wt, w.data(), n, k, 0, groups, 0, chunks, p.data());
        for (const float* b : {static_cast<const float*>(nullptr), bias.data()}) {
          std::vector<float> want(m * n);
          dense::ref::packed_order_matmul(c.wt, w.data(), n, k, x.data(), m, b, want.data());
          const int64_t ldy = n + 3;  // columns past n stay untouched
          std::vector<float> got(m * ldy, 7.f);
          // In two group ranges and two row ranges, as tasks see it.
          const int64_t gs = groups / 2;
          for (auto [g0, g1] : {std::pair<int64_t, int64_t>{0, gs}, {gs, groups}}) {
            for (auto [i0, i1] : {std::pair<int64_t, int64_t>{0, 5}, {5, m}}) {
              dense::packed_matmul_avx512(c.wt, p.data() + g0 * chunks * 64, n, k, g0, g1, x.data(),
                                          i0, i1, b, got.data(), ldy);
            }
          }
          for (int64_t i = 0; i < m; ++i) {
            ASSERT_EQ(0, std::memcmp(&got[i * ldy], &want[i * n], n * 4))
                << c.name << " k=" << k << " n=" << n << " row " << i << (b ? " bias" : "");
            for (int64_t j = n; j < ldy; ++j) ASSERT_EQ(got[i * ldy + j], 7.f);
          }
        }
      }
    }
  }
}

TEST(DensePacked, BackendUsesThePreparedWeightAtAnyThreadCount) {
  if (!has_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
  const int64_t n = 70, k = 259;
  for (const TypeCase& c : kTypes) {
    const Tensor w = weight(c, n, k, 6);
    const std::vector<float> bias = af::test::random_floats(n, -1, 1, 7);
    for (int64_t m : {1, 4, 40}) {
      const std::vector<float> x = af::test::random_floats(m * k, -1, 1, 8);
      std::vector<float> want(m * n);
      dense::ref::packed_order_matmul(c.wt, w.data(), n, k, x.data(), m, bias.data(), want.data());
      for (int threads : {1, 2, 3}) {
        af::cpu::CpuBackend be({af::Device::cpu(), threads, "avx512"});
        const auto prepared = be.prepare_matmul_weight(w);
        ASSERT_NE(prepared, nullptr) << c.name;
        std::vector<float> got(m * n);
        be.matmul(x.data(), m, w, bias.data(), got.data(), prepared.get());
        EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * 4))
            << c.name << " m=" << m << " threads=" << threads;
        // Backends without the layout use the weight as stored, as if unprepared.
        if (!af::cpu::isa_supported(af::cpu::Isa::kAvx2)) continue;
        af::cpu::CpuBackend avx2({af::Device::cpu(), threads, "avx2"});
        EXPECT_EQ(avx2.prepare_matmul_weight(w), nullptr);
        std::vector<float> a(m * n), b(m * n);
        avx2.matmul(x.data(), m, w, bias.data(), a.data(), prepared.get());
        avx2.matmul(x.data(), m, w, bias.data(), b.data());
        EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4)) << c.name;
      }
    }
  }
}

}  // namespace
