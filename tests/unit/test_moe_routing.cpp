// The MoE router's top-k (models/moe_block.hpp) as the HF models define it, and the MoE ffn's
// grouped prefill against one token at a time and across thread counts.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "af/backend/backend.hpp"
#include "af/core/tensor.hpp"
#include "models/moe_block.hpp"

namespace af {
namespace {

TEST(MoeRouting, TiesGoToTheLowerExpertIndexAsTorchTopk) {
  const float logits[] = {1, 3, 3, 0,  // two equal best
                          2, 2, 2, 2};
  int32_t experts[4];
  float weights[4];
  models::route_top_k(logits, 2, 4, 2, false, experts, weights);
  EXPECT_EQ(experts[0], 1);
  EXPECT_EQ(experts[1], 2);
  EXPECT_EQ(experts[2], 0);
  EXPECT_EQ(experts[3], 1);
  EXPECT_FLOAT_EQ(weights[2], 0.25f);
}

TEST(MoeRouting, LargestFirstWithSoftmaxProbabilities) {
  const float logits[] = {0.5f, -1.0f, 2.0f, 1.0f};
  int32_t experts[2];
  float weights[2];
  models::route_top_k(logits, 1, 4, 2, false, experts, weights);
  double sum = 0;
  for (float l : logits) sum += std::exp(l);
  EXPECT_EQ(experts[0], 2);
  EXPECT_EQ(experts[1], 3);
  EXPECT_NEAR(weights[0], std::exp(2.0) / sum, 1e-6);  // not renormalised (Qwen2-MoE)
  EXPECT_NEAR(weights[1], std::exp(1.0) / sum, 1e-6);
}

TEST(MoeRouting, RenormalisedEqualsSoftmaxOverTheTopKLogits) {
  // Mixtral's definition (softmax of the chosen logits) and Qwen3's (renormalised top-k of the
  // softmax) give the same weights.
  const float logits[] = {0.3f, 1.7f, -0.2f, 1.1f, 0.9f, -2.0f};
  int32_t experts[2];
  float weights[2];
  models::route_top_k(logits, 1, 6, 2, true, experts, weights);
  EXPECT_EQ(experts[0], 1);
  EXPECT_EQ(experts[1], 3);
  const double a = std::exp(1.7), b = std::exp(1.1);
  EXPECT_NEAR(weights[0], a / (a + b), 1e-6);
  EXPECT_NEAR(weights[1], b / (a + b), 1e-6);
}

Tensor random_weight(int64_t rows, int64_t cols, std::mt19937& rng, float scale) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(rows * cols));
  for (float& x : v) x = dist(rng);
  return Tensor::from_f32(Shape{rows, cols}, v.data());
}

nn::Linear linear(int64_t in, int64_t out, std::mt19937& rng, float scale = 0.2f) {
  nn::Linear l;
  l.weight = random_weight(out, in, rng, scale);
  l.in = in;
  l.out = out;
  return l;
}

// 8 experts, top 2, a shared expert: hidden 32, expert width 24, shared width 16.
models::MoeFfn random_ffn(std::mt19937& rng) {
  models::MoeFfn f;
  f.hidden = 32;
  f.ff = 24;
  f.shared_ff = 16;
  f.top_k = 2;
  f.router = linear(32, 8, rng, 1.0f);
  for (int e = 0; e < 8; ++e)
    f.experts.push_back({linear(32, 24, rng), linear(32, 24, rng), linear(24, 32, rng)});
  f.shared.gate_proj = linear(32, 16, rng);
  f.shared.up_proj = linear(32, 16, rng);
  f.shared.down_proj = linear(16, 32, rng);
  f.shared_gate = linear(32, 1, rng);
  return f;
}

std::vector<float> run(const models::MoeFfn& f, const std::vector<float>& h, int64_t n,
                       int threads) {
  std::unique_ptr<Backend> be = make_backend({Device::cpu(), threads, ""});
  models::MoeScratch scratch;
  std::vector<float> y(static_cast<size_t>(n * f.hidden));
  f.forward(*be, h.data(), n, scratch, y.data());
  return y;
}

TEST(MoeFfn, GroupedPrefillEqualsOneTokenAtATimeAndIgnoresThreadCount) {
  std::mt19937 rng(7);
  const models::MoeFfn f = random_ffn(rng);
  const int64_t n = 37;
  std::vector<float> h(static_cast<size_t>(n * f.hidden));
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (float& x : h) x = dist(rng);
  const std::vector<float> all = run(f, h, n, 2);
  for (int64_t t = 0; t < n; ++t) {
    const std::vector<float> row(h.begin() + t * f.hidden, h.begin() + (t + 1) * f.hidden);
    const std::vector<float> one = run(f, row, 1, 2);
    for (int64_t d = 0; d < f.hidden; ++d)
      ASSERT_NEAR(one[static_cast<size_t>(d)], all[static_cast<size_t>(t * f.hidden + d)], 1e-5)
          << "token " << t << " dim " << d;
  }
  EXPECT_TRUE(run(f, h, n, 1) == all);
  EXPECT_TRUE(run(f, h, n, 3) == all);
}

}  // namespace
}  // namespace af
