// Backend::matmul_group: each product equals its own matmul() bit for bit, whatever the mix of
// weight types (shared quantized / rounded activations, prepared or not) and thread count.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "af/backend/quant.hpp"
#include "af/core/error.hpp"
#include "af/core/half.hpp"
#include "af/core/tensor.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "test_util.hpp"

namespace {

using af::DType;
using af::Shape;
using af::Tensor;

Tensor make_weight(DType type, int64_t n, int64_t k, uint32_t seed) {
  const std::vector<float> v = af::test::random_floats(static_cast<size_t>(n * k), -1, 1, seed);
  Tensor t = Tensor::zeros(type, Shape{n, k});
  if (type == DType::F32) {
    std::memcpy(t.mutable_data(), v.data(), v.size() * 4);
  } else if (type == DType::F16 || type == DType::BF16) {
    auto* d = reinterpret_cast<uint16_t*>(t.mutable_data());
    for (size_t i = 0; i < v.size(); ++i) {
      d[i] = type == DType::F16 ? af::f32_to_f16(v[i]) : af::f32_to_bf16(v[i]);
    }
  } else {
    const int64_t rb = af::row_bytes(type, k);
    for (int64_t r = 0; r < n; ++r) {
      af::quant::quantize_row(type, v.data() + r * k, t.mutable_data() + r * rb, k);
    }
  }
  return t;
}

TEST(MatmulGroup, EachProductEqualsItsOwnMatmul) {
  const int64_t k = 256;
  const struct {
    DType type;
    int64_t n;
    bool prepare, bias;
  } specs[] = {{DType::Q4_0, 70, true, false},  {DType::Q4_0, 33, false, true},
               {DType::Q8_0, 48, true, true},   {DType::Q5_1, 21, true, false},
               {DType::Q4_K, 19, false, false}, {DType::Q6_K, 40, false, true},
               {DType::F16, 37, true, true},    {DType::F32, 17, false, false},
               {DType::BF16, 29, true, false}};
  for (bool bf16_dot : {false, true}) {
    for (int threads : {1, 2, 3}) {
      af::BackendOptions opts{af::Device::cpu(), threads, ""};
      opts.bf16_dot = bf16_dot;
      af::cpu::CpuBackend be(opts);
      std::vector<Tensor> weights;
      std::vector<std::shared_ptr<const af::PreparedWeight>> prepared;
      std::vector<std::vector<float>> biases;
      uint32_t seed = 1;
      for (const auto& s : specs) {
        weights.push_back(make_weight(s.type, s.n, k, seed++));
        prepared.push_back(s.prepare ? be.prepare_matmul_weight(weights.back()) : nullptr);
        biases.push_back(s.bias ? af::test::random_floats(s.n, -1, 1, seed++)
                                : std::vector<float>{});
      }
      for (int64_t m : {1, 5, 40}) {
        const std::vector<float> x = af::test::random_floats(m * k, -1, 1, 99);
        std::vector<std::vector<float>> alone, grouped;
        std::vector<af::Backend::MatmulTarget> targets;
        for (size_t i = 0; i < weights.size(); ++i) {
          const int64_t n = weights[i].shape()[0];
          const float* b = biases[i].empty() ? nullptr : biases[i].data();
          alone.emplace_back(m * n);
          grouped.emplace_back(m * n, -1.f);
          be.matmul(x.data(), m, weights[i], b, alone.back().data(), prepared[i].get());
        }
        for (size_t i = 0; i < weights.size(); ++i) {
          targets.push_back({&weights[i], biases[i].empty() ? nullptr : biases[i].data(),
                             grouped[i].data(), prepared[i].get()});
        }
        be.matmul_group(x.data(), m, targets.data(), static_cast<int64_t>(targets.size()));
        for (size_t i = 0; i < weights.size(); ++i) {
          EXPECT_EQ(0, std::memcmp(alone[i].data(), grouped[i].data(), alone[i].size() * 4))
              << af::name(specs[i].type) << " m=" << m << " threads=" << threads
              << " bf16_dot=" << bf16_dot;
        }
      }
    }
  }
}

TEST(MatmulGroup, RejectsWeightsOfAnotherRowLength) {
  af::cpu::CpuBackend be({af::Device::cpu(), 2, ""});
  const Tensor a = make_weight(DType::F32, 4, 32, 1);
  const Tensor b = make_weight(DType::Q8_0, 4, 64, 2);
  const std::vector<float> x(64, 0.5f);
  std::vector<float> ya(4), yb(4);
  const af::Backend::MatmulTarget targets[] = {{&a, nullptr, ya.data(), nullptr},
                                               {&b, nullptr, yb.data(), nullptr}};
  try {
    be.matmul_group(x.data(), 1, targets, 2);
    FAIL() << "expected af::Error";
  } catch (const af::Error& e) {
    EXPECT_NE(std::string(e.what()).find("[4, 64]"), std::string::npos) << e.what();
  }
  be.matmul_group(x.data(), 1, nullptr, 0);  // nothing to do
  EXPECT_THROW(be.matmul_group(x.data(), 1, nullptr, 1), af::Error);
}

}  // namespace
