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
#include "backend/cpu/dispatch.hpp"
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

// rms_norm_matmul_group equals rms_norm then matmul_group bit for bit: with only packed int8
// weights (the norm fused into the quantization, h never written), and with a mix that needs
// the float rows too (after or before the fused split), on every ISA and thread count.
TEST(MatmulGroup, NormFusedGroupEqualsNormThenGroup) {
  const int64_t k = 512;  // whole Q4_K super-blocks
  const float eps = 1e-5f;
  const std::vector<float> norm_w = af::test::random_floats(k, 0.5f, 1.5f, 7);
  const std::vector<std::vector<DType>> mixes = {
      {DType::Q8_0, DType::Q4_0, DType::Q4_0},
      {DType::Q4_0, DType::Q4_K, DType::F16, DType::BF16},
      {DType::F32, DType::Q8_0, DType::Q5_0},
  };
  for (const char* isa : {"", "avx2", "scalar"}) {
    if (*isa && !af::cpu::isa_supported(af::cpu::parse_isa(isa))) continue;
    for (int threads : {1, 2}) {
      af::BackendOptions opts{af::Device::cpu(), threads, isa};
      af::cpu::CpuBackend be(opts);
      for (const auto& mix : mixes) {
        std::vector<Tensor> weights;
        std::vector<std::shared_ptr<const af::PreparedWeight>> prepared;
        uint32_t seed = 11;
        for (DType type : mix) {
          weights.push_back(make_weight(type, 35, k, seed++));
          // The second Q4_0 of the first mix stays unprepared (packed on the fly for m = 40).
          const bool prepare = !(type == DType::Q4_0 && weights.size() == 3);
          prepared.push_back(prepare ? be.prepare_matmul_weight(weights.back()) : nullptr);
        }
        for (int64_t m : {1, 5, 40}) {
          const std::vector<float> x = af::test::random_floats(m * k, -3, 3, 5);
          std::vector<float> h_want(m * k), h(m * k, -2.f);
          be.rms_norm(x.data(), norm_w.data(), m, k, eps, h_want.data());
          std::vector<std::vector<float>> want, got;
          std::vector<af::Backend::MatmulTarget> want_targets, got_targets;
          for (size_t i = 0; i < weights.size(); ++i) {
            want.emplace_back(m * 35);
            got.emplace_back(m * 35, -1.f);
          }
          for (size_t i = 0; i < weights.size(); ++i) {
            want_targets.push_back({&weights[i], nullptr, want[i].data(), prepared[i].get()});
            got_targets.push_back({&weights[i], nullptr, got[i].data(), prepared[i].get()});
          }
          const auto n = static_cast<int64_t>(weights.size());
          be.matmul_group(h_want.data(), m, want_targets.data(), n);
          be.rms_norm_matmul_group(x.data(), norm_w.data(), eps, m, k, h.data(), got_targets.data(),
                                   n);
          for (size_t i = 0; i < weights.size(); ++i) {
            EXPECT_EQ(0, std::memcmp(want[i].data(), got[i].data(), want[i].size() * 4))
                << af::name(mix[i]) << " in mix " << &mix - mixes.data() << " m=" << m
                << " isa=" << isa << " threads=" << threads;
          }
        }
      }
    }
  }
  af::cpu::CpuBackend be({af::Device::cpu(), 2, ""});
  const std::vector<float> x(k, 1.f);
  std::vector<float> h(k), y(35);
  const Tensor w = make_weight(DType::Q8_0, 35, k, 3);
  const af::Backend::MatmulTarget t{&w, nullptr, y.data(), nullptr};
  EXPECT_THROW(be.rms_norm_matmul_group(x.data(), nullptr, eps, 1, k, h.data(), &t, 1), af::Error);
  EXPECT_THROW(be.rms_norm_matmul_group(x.data(), norm_w.data(), eps, 1, 0, h.data(), &t, 1),
               af::Error);
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
