// Weights repacked at load (quant/packed.hpp): the AVX-512 VNNI kernels against the scalar
// block-sum reference bit for bit at odd sizes, the prepare/matmul plumbing on every ISA, and
// bad arguments.
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "af/backend/quant.hpp"
#include "af/core/error.hpp"
#include "af/core/tensor.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/dispatch.hpp"
#include "backend/cpu/quant/blocks.hpp"
#include "backend/cpu/quant/packed.hpp"
#include "backend/cpu/quant/quant_kernels.hpp"
#include "quant_test_util.hpp"

namespace {

using af::DType;
using af::Shape;
using af::Tensor;
namespace q = af::cpu::quant;
namespace pk = af::cpu::quant::packed;

const DType kPackedTypes[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0};

std::vector<float> test_values(int64_t rows, int64_t k, uint32_t seed) {
  return af::test::spread_values(rows, k, seed);
}

Tensor quantized_weight(DType type, int64_t n, int64_t k, uint32_t seed) {
  const std::vector<float> values = test_values(n, k, seed);
  Tensor w = Tensor::zeros(type, Shape{n, k});
  const int64_t rb = af::row_bytes(type, k);
  for (int64_t r = 0; r < n; ++r) {
    af::quant::quantize_row(type, values.data() + r * k, w.mutable_data() + r * rb, k);
  }
  if (type == DType::Q8_0) {  // a file may hold -128, which our quantizer never writes
    reinterpret_cast<af::quant::BlockQ8_0*>(w.mutable_data())[0].qs[3] = -128;
  }
  return w;
}

// The activation rows as the backend quantizes them (Q8_0 of the reference quantizer, whose
// bytes every ISA's activation quantizer reproduces).
std::vector<uint8_t> quantized_activations(const std::vector<float>& x, int64_t m, int64_t k) {
  const int64_t rb = af::row_bytes(DType::Q8_0, k);
  std::vector<uint8_t> out(static_cast<size_t>(m * rb));
  for (int64_t i = 0; i < m; ++i) {
    af::quant::quantize_row(DType::Q8_0, x.data() + i * k, out.data() + i * rb, k);
  }
  return out;
}

using af::test::same_bits;

bool has_vnni() { return af::cpu::cpu_has_avx512_vnni_bf16(); }

// y must equal the reference (plus bias) bit for bit.
void expect_reference(DType type, const Tensor& w, const std::vector<float>& x, int64_t m,
                      const float* bias, const std::vector<float>& y, const std::string& what) {
  const int64_t n = w.shape()[0], k = w.shape()[1];
  const std::vector<uint8_t> a = quantized_activations(x, m, k);
  const int64_t wb = af::row_bytes(type, k), ab = af::row_bytes(DType::Q8_0, k);
  const auto* wd = reinterpret_cast<const uint8_t*>(w.data());
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      float ref = q::ref::dot(*q::quant_slot(type), k, wd + j * wb, a.data() + i * ab);
      if (bias) ref += bias[j];
      ASSERT_TRUE(same_bits(y[static_cast<size_t>(i * n + j)], ref))
          << what << " (" << i << ", " << j << "): " << y[static_cast<size_t>(i * n + j)] << " vs "
          << ref;
    }
  }
}

TEST(QuantPacked, KernelsMatchTheReferenceBitForBitAtOddSizes) {
  if (!has_vnni()) GTEST_SKIP() << "no AVX512_VNNI on this CPU";
  struct Case {
    int64_t k;
    std::vector<int64_t> ms;
  };
  // n = 37: two full groups and a tail of 5; n = 16 * 3: full tiles of three groups.
  const Case cases[] = {
      {32, {1, 3, 7, 33, 130}}, {96, {1, 3, 7, 33, 130}}, {896, {1, 3, 7, 33}}, {4864, {1, 7}}};
  for (DType type : kPackedTypes) {
    for (const Case& c : cases) {
      for (int64_t n : {int64_t{37}, int64_t{48}}) {
        const Tensor w = quantized_weight(type, n, c.k, static_cast<uint32_t>(n + c.k));
        const std::vector<float> bias = af::test::random_floats(static_cast<size_t>(n), -1, 1, 4);
        af::cpu::CpuBackend be({af::Device::cpu(), 2, ""});
        const auto prepared = be.prepare_matmul_weight(w);
        ASSERT_NE(prepared, nullptr) << af::name(type);
        for (int64_t m : c.ms) {
          const std::vector<float> x = test_values(m, c.k, static_cast<uint32_t>(m));
          for (const float* b : {static_cast<const float*>(nullptr), bias.data()}) {
            // Unprepared weights with m >= 2 rows are packed tile by tile during the matmul.
            for (bool use_prepared : {true, false}) {
              if (!use_prepared && m < 2) continue;
              std::vector<float> y(static_cast<size_t>(m * n), -7.f);
              be.matmul(x.data(), m, w, b, y.data(), use_prepared ? prepared.get() : nullptr);
              expect_reference(type, w, x, m, b, y,
                               std::string(af::name(type)) + " k=" + std::to_string(c.k) +
                                   " n=" + std::to_string(n) + " m=" + std::to_string(m) +
                                   (b ? " bias" : "") + (use_prepared ? " prepared" : ""));
            }
          }
        }
      }
    }
  }
}

TEST(QuantPacked, SimdPackerWritesTheReferencePackersBytes) {
  if (!has_vnni()) GTEST_SKIP() << "no AVX512_VNNI on this CPU";
  for (DType type : kPackedTypes) {
    for (int64_t n : {int64_t{16}, int64_t{45}}) {  // full groups only, and a tail of 13 rows
      const int64_t k = 96;
      const Tensor w = quantized_weight(type, n, k, 21);
      const auto* src = reinterpret_cast<const uint8_t*>(w.data());
      const int64_t groups = pk::group_count(n);
      const size_t bytes = static_cast<size_t>(groups * (k / 32) * pk::group_block_bytes(type));
      std::vector<uint8_t> expect(bytes, 0xAB), got(bytes, 0xCD);
      pk::pack_groups(type, src, n, k, 0, groups, expect.data());
      pk::avx512vnni_pack(type)(type, src, n, k, 0, groups, got.data());
      for (size_t i = 0; i < bytes; ++i) {
        ASSERT_EQ(got[i], expect[i]) << af::name(type) << " n=" << n << " byte " << i;
      }
      // A range of groups lands at dst, not at its offset in the whole tensor.
      if (groups > 1) {
        const size_t group_bytes = bytes / static_cast<size_t>(groups);
        std::vector<uint8_t> tail(bytes - group_bytes, 0xEE);
        pk::avx512vnni_pack(type)(type, src, n, k, 1, groups, tail.data());
        EXPECT_EQ(0, std::memcmp(tail.data(), expect.data() + group_bytes, tail.size()));
      }
    }
  }
}

// The fused activation quantizer against the reference quantizer followed by the split: ties
// at .5 (both signs), an all-zero block, values far apart in magnitude, several blocks.
TEST(QuantPacked, FusedActivationSplitEqualsQuantizeThenSplit) {
  if (!has_vnni()) GTEST_SKIP() << "no AVX512_VNNI on this CPU";
  const int64_t k = 32 * 7;
  std::vector<float> x = test_values(3, k, 41);
  for (int e = 0; e < 32; ++e) {
    x[e] = e == 0 ? 127.f : static_cast<float>(e % 2 ? e : -e) + (e % 3 ? 0.5f : -0.5f);
    x[32 + e] = 0.f;
    x[64 + e] = (e % 2 ? 1e-30f : 3e4f) * (e % 3 ? 1.f : -1.f);
  }
  const std::vector<uint8_t> rows = quantized_activations(x, 3, k);
  const int64_t nb = k / 32, rb = af::row_bytes(DType::Q8_0, k);
  for (DType type : kPackedTypes) {
    for (int64_t r = 0; r < 3; ++r) {
      std::vector<int8_t> qs_want(k), qs_got(k, 1);
      std::vector<float> d_want(nb), d_got(nb, -1.f), asum_want(nb), asum_got(nb, -1.f);
      std::vector<int32_t> off_want(nb), off_got(nb, 7);
      pk::split_activation_row(type, rows.data() + r * rb, k, qs_want.data(), d_want.data(),
                               off_want.data(), asum_want.data());
      pk::quantize_split_row_avx512(type, x.data() + r * k, k, qs_got.data(), d_got.data(),
                                    off_got.data(), asum_got.data());
      const std::string what = std::string(af::name(type)) + " row " + std::to_string(r);
      EXPECT_EQ(qs_got, qs_want) << what;
      EXPECT_EQ(off_got, off_want) << what;
      for (int64_t b = 0; b < nb; ++b) {
        EXPECT_TRUE(same_bits(d_got[b], d_want[b])) << what << " block " << b;
        EXPECT_TRUE(same_bits(asum_got[b], asum_want[b])) << what << " block " << b;
      }
    }
  }
}

TEST(QuantPacked, ResultsDoNotDependOnThreadCount) {
  if (!has_vnni()) GTEST_SKIP() << "no AVX512_VNNI on this CPU";
  const int64_t n = 200, k = 256, m = 70;
  for (DType type : {DType::Q4_0, DType::Q5_1}) {
    const Tensor w = quantized_weight(type, n, k, 9);
    const std::vector<float> x = test_values(m, k, 10);
    std::vector<float> first;  // the same bits prepared or packed on the fly
    for (int threads : {1, 2, 3}) {
      af::cpu::CpuBackend be({af::Device::cpu(), threads, ""});
      const auto prepared = be.prepare_matmul_weight(w);
      for (const af::PreparedWeight* p :
           {prepared.get(), static_cast<const af::PreparedWeight*>(nullptr)}) {
        std::vector<float> y(static_cast<size_t>(m * n));
        be.matmul(x.data(), m, w, nullptr, y.data(), p);
        if (first.empty()) {
          first = y;
          continue;
        }
        for (size_t i = 0; i < y.size(); ++i) {
          ASSERT_TRUE(same_bits(y[i], first[i]))
              << af::name(type) << " threads=" << threads << (p ? " prepared" : " on the fly");
        }
      }
    }
  }
}

// Only the AVX-512 VNNI backend repacks at load (the AVX2 / AVX-VNNI ones pack 8-row tiles
// during prefills, quant/packed8.hpp), and a backend uses a weight prepared by another as it is
// stored: every combination gives the reference's bits.
TEST(QuantPacked, EachBackendPacksItsOwnLayoutAndUsesOthersAsStored) {
  const int64_t n = 21, k = 64, m = 3;
  const Tensor w = quantized_weight(DType::Q4_0, n, k, 11);
  const std::vector<float> x = test_values(m, k, 12);
  const std::vector<uint8_t> a = quantized_activations(x, m, k);
  std::vector<std::unique_ptr<af::cpu::CpuBackend>> backends;
  std::vector<std::shared_ptr<const af::PreparedWeight>> prepared;
  for (const char* isa : {"", "scalar", "avx2"}) {
    if (*isa && !af::cpu::isa_supported(af::cpu::parse_isa(isa))) continue;
    backends.push_back(
        std::make_unique<af::cpu::CpuBackend>(af::BackendOptions{af::Device::cpu(), 2, isa}));
    prepared.push_back(backends.back()->prepare_matmul_weight(w));
    const std::string table = backends.back()->quant_kernels().isa;
    const bool packs = table == "avx512vnni";
    EXPECT_EQ(prepared.back() != nullptr, packs) << "isa '" << isa << "'";
    // The K-quants (Q2_K .. Q6_K) have their own layout on every SIMD table (tested in
    // test_quant_kpacked.cpp); the scalar table uses every weight as stored.
    EXPECT_EQ(
        backends.back()->prepare_matmul_weight(quantized_weight(DType::Q3_K, 2, 256, 1)) != nullptr,
        table != "scalar");
  }
  for (size_t b = 0; b < backends.size(); ++b) {
    for (size_t p = 0; p <= prepared.size(); ++p) {
      const af::PreparedWeight* pw = p < prepared.size() ? prepared[p].get() : nullptr;
      std::vector<float> y(static_cast<size_t>(m * n));
      backends[b]->matmul(x.data(), m, w, nullptr, y.data(), pw);
      const int64_t wb = af::row_bytes(DType::Q4_0, k), ab = af::row_bytes(DType::Q8_0, k);
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
          const float ref =
              q::ref::dot(q::kSlotQ4_0, k, reinterpret_cast<const uint8_t*>(w.data()) + j * wb,
                          a.data() + i * ab);
          ASSERT_TRUE(same_bits(y[static_cast<size_t>(i * n + j)], ref))
              << backends[b]->name() << " with the weight prepared by backend " << p;
        }
      }
    }
  }
}

TEST(QuantPacked, RejectsBadWeightsAndMismatchedPreparedWeights) {
  af::cpu::CpuBackend be({af::Device::cpu(), 1, ""});
  const auto expect_error = [](auto&& fn, const char* needle) {
    try {
      fn();
      FAIL() << "expected af::Error mentioning " << needle;
    } catch (const af::Error& e) {
      EXPECT_EQ(e.code(), af::ErrorCode::kInvalidArgument) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error([&] { be.prepare_matmul_weight(Tensor::zeros(DType::Q4_0, Shape{64})); }, "2-D");
  try {
    be.prepare_matmul_weight(Tensor::zeros(DType::I32, Shape{2, 4}));
    FAIL() << "expected af::Error for an i32 weight";
  } catch (const af::Error& e) {
    EXPECT_EQ(e.code(), af::ErrorCode::kUnsupported) << e.what();
  }
  if (!has_vnni()) return;
  const Tensor w = quantized_weight(DType::Q8_0, 20, 64, 13);
  const Tensor other = quantized_weight(DType::Q8_0, 20, 64, 14);
  const auto prepared = be.prepare_matmul_weight(w);
  ASSERT_NE(prepared, nullptr);
  std::vector<float> x(64, 0.5f), y(20);
  be.matmul(x.data(), 1, w, nullptr, y.data(), prepared.get());
  expect_error([&] { be.matmul(x.data(), 1, other, nullptr, y.data(), prepared.get()); },
               "prepared weight");
  const Tensor reshaped = w.reshape(Shape{10, 128});
  expect_error([&] { be.matmul(x.data(), 1, reshaped, nullptr, y.data(), prepared.get()); },
               "prepared weight");
  struct Foreign : af::PreparedWeight {};
  const Foreign foreign;
  expect_error([&] { be.matmul(x.data(), 1, w, nullptr, y.data(), &foreign); }, "prepared weight");
}

}  // namespace
