// Sampling: greedy, top-k, top-p and temperature on hand-computed distributions.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "af/core/error.hpp"
#include "af/ops/sampling.hpp"

namespace af::ops {
namespace {

TEST(Sampling, GreedyAndTopKOneTakeTheArgmax) {
  const std::vector<float> logits = {0.5f, 3.0f, -1.0f, 2.9f};
  EXPECT_EQ(argmax(logits), 1);
  Sampler greedy({.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .seed = 1});
  Sampler top1({.temperature = 1.5f, .top_k = 1, .top_p = 1.0f, .seed = 1});
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(greedy.sample(logits).id, 1);
    EXPECT_EQ(top1.sample(logits).id, 1);
  }
}

TEST(Sampling, FrequenciesFollowTheTemperedDistribution) {
  // p = softmax([ln 1, ln 3]) = [0.25, 0.75]; at temperature 2: softmax([ln1/2, ln3/2]) =
  // [1, sqrt 3] / (1 + sqrt 3) = [0.366, 0.634].
  const std::vector<float> logits = {0.0f, std::log(3.0f)};
  for (auto [temp, expected] :
       {std::pair{1.0f, 0.75}, std::pair{2.0f, std::sqrt(3.0) / (1 + std::sqrt(3.0))}}) {
    Sampler s({.temperature = temp, .top_k = 0, .top_p = 1.0f, .seed = 123});
    const int n = 20000;
    int ones = 0;
    for (int i = 0; i < n; ++i) ones += s.sample(logits).id;
    const double sigma = std::sqrt(expected * (1 - expected) / n);
    EXPECT_NEAR(static_cast<double>(ones) / n, expected, 5 * sigma) << "temperature " << temp;
  }
}

TEST(Sampling, TopKAndTopPCutTheTail) {
  // probabilities 0.5, 0.3, 0.15, 0.05
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f),
                                     std::log(0.05f)};
  Sampler top_p({.temperature = 1.0f,
                 .top_k = 0,
                 .top_p = 0.75f,
                 .seed = 5});  // 0.5 + 0.3 passes 0.75: only ids 0 and 1 remain
  Sampler top_k({.temperature = 1.0f, .top_k = 3, .top_p = 1.0f, .seed = 5});
  std::vector<int> seen_p(4), seen_k(4);
  for (int i = 0; i < 5000; ++i) {
    ++seen_p[static_cast<size_t>(top_p.sample(logits).id)];
    ++seen_k[static_cast<size_t>(top_k.sample(logits).id)];
  }
  EXPECT_EQ(seen_p[2] + seen_p[3], 0);
  EXPECT_GT(seen_p[1], 1500);  // 0.3 / 0.8 = 37.5% of 5000
  EXPECT_EQ(seen_k[3], 0);
  EXPECT_GT(seen_k[2], 500);  // 0.15 / 0.95 = 15.8%
}

TEST(Sampling, SameSeedSameSequence) {
  const std::vector<float> logits = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f};
  Sampler a({.temperature = 0.9f, .top_k = 0, .top_p = 0.95f, .seed = 99}),
      b({.temperature = 0.9f, .top_k = 0, .top_p = 0.95f, .seed = 99});
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.sample(logits).id, b.sample(logits).id);
}

TEST(Sampling, BadParametersAndLogitsAreErrors) {
  EXPECT_THROW(Sampler({.temperature = -1.0f, .top_k = 0, .top_p = 1.0f, .seed = 0}), Error);
  EXPECT_THROW(Sampler({.temperature = 1.0f, .top_k = -2, .top_p = 1.0f, .seed = 0}), Error);
  EXPECT_THROW(Sampler({.temperature = 1.0f, .top_k = 0, .top_p = 0.0f, .seed = 0}), Error);
  Sampler s({.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 0});
  EXPECT_THROW(s.sample(std::vector<float>{}), Error);
  EXPECT_THROW(s.sample(std::vector<float>{-INFINITY, -INFINITY}), Error);
}

}  // namespace
}  // namespace af::ops
