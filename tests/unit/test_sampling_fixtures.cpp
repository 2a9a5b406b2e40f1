// The sampling chain against transformers' logits processors (repetition penalty, temperature,
// top-k, top-p, min-p, typical-p, in the order generate() builds them) and against OpenAI's
// presence/frequency formula, recorded by tools/sampling_make_fixtures.py into
// tests/fixtures/sampling so that no Python is needed here.
#include <algorithm>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "af/ops/sampling.hpp"
#include "test_util.hpp"

namespace af::ops {
namespace {

SamplingParams params_from(const nlohmann::json& j, uint64_t seed) {
  return {.temperature = j.at("temperature").get<float>(),
          .top_k = j.at("top_k").get<int32_t>(),
          .top_p = j.at("top_p").get<float>(),
          .min_p = j.at("min_p").get<float>(),
          .typical_p = j.at("typical_p").get<float>(),
          .repetition_penalty = j.at("repetition_penalty").get<float>(),
          .presence_penalty = j.at("presence_penalty").get<float>(),
          .frequency_penalty = j.at("frequency_penalty").get<float>(),
          .penalty_last_n = j.at("penalty_last_n").get<int32_t>(),
          .seed = seed};
}

TEST(SamplingFixtures, KeptSetsAndProbabilitiesEqualTransformers) {
  const auto fixture =
      nlohmann::json::parse(test::read_text(test::fixtures_dir() + "/sampling/transformers.json"));
  const auto& cases = fixture.at("cases");
  ASSERT_GE(cases.size(), 30u);
  size_t checked_probs = 0;
  for (const auto& c : cases) {
    const std::string name = c.at("name").get<std::string>();
    SCOPED_TRACE(name);
    const auto logits = c.at("logits").get<std::vector<float>>();
    const auto history = c.at("history").get<std::vector<int32_t>>();
    const auto kept = c.at("kept").get<std::vector<int32_t>>();
    const auto probs = c.at("probs").get<std::vector<double>>();
    ASSERT_EQ(kept.size(), probs.size());
    Sampler sampler(params_from(c.at("params"), 7));
    const std::vector<TokenProb> dist = sampler.distribution(logits, history);
    std::vector<int32_t> ids;
    for (const TokenProb& p : dist) ids.push_back(p.id);
    ASSERT_EQ(ids, kept);
    for (size_t i = 0; i < dist.size(); ++i) {
      EXPECT_NEAR(dist[i].prob, probs[i], 1e-6) << "id " << kept[i];
      ++checked_probs;
    }
    // What sample() draws always lies in the kept set.
    for (int draw = 0; draw < 20; ++draw) {
      const int32_t id = sampler.sample(logits, history).id;
      EXPECT_TRUE(std::binary_search(kept.begin(), kept.end(), id)) << "drew " << id;
    }
  }
  EXPECT_GT(checked_probs, 3000u);
}

}  // namespace
}  // namespace af::ops
