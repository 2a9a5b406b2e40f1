// Sampling: each step of the chain, and the chain's order, on hand-computed distributions; log
// probabilities; bad parameters and inputs.
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "af/core/error.hpp"
#include "af/ops/sampling.hpp"

namespace af::ops {
namespace {

constexpr double kTol = 1e-6;

std::vector<float> log_probs(const std::vector<double>& probs) {
  std::vector<float> logits;
  for (double p : probs) logits.push_back(static_cast<float>(std::log(p)));
  return logits;
}

// Expects `dist` to hold exactly these ids (ascending) with these probabilities.
void expect_distribution(const std::vector<TokenProb>& dist, const std::vector<int32_t>& ids,
                         const std::vector<double>& probs) {
  ASSERT_EQ(dist.size(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(dist[i].id, ids[i]) << "position " << i;
    EXPECT_NEAR(dist[i].prob, probs[i], kTol) << "id " << ids[i];
  }
}

std::vector<TokenProb> distribution_of(const SamplingParams& params,
                                       const std::vector<float>& logits,
                                       const std::vector<int32_t>& history = {}) {
  Sampler sampler(params);
  return sampler.distribution(logits, history);
}

TEST(SamplingSteps, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogitsOnce) {
  // id 1 appears twice but is penalised once (distinct ids): 2/2 = 1, -1*2 = -2; id 2, 3 untouched.
  std::vector<float> logits = {2.0f, -1.0f, 0.5f, 3.0f};
  const std::vector<int32_t> history = {0, 1, 1};
  apply_penalties(logits, history, 2.0f, 0.0f, 0.0f);
  EXPECT_EQ(logits, (std::vector<float>{1.0f, -2.0f, 0.5f, 3.0f}));
  // A penalty below 1 rewards: 2/0.5 = 4, -1*0.5 = -0.5.
  logits = {2.0f, -1.0f, 0.5f, 3.0f};
  apply_penalties(logits, history, 0.5f, 0.0f, 0.0f);
  EXPECT_EQ(logits, (std::vector<float>{4.0f, -0.5f, 0.5f, 3.0f}));
}

TEST(SamplingSteps, PresenceAndFrequencyPenaltiesFollowOpenAI) {
  // logit -= presence * (count > 0) + frequency * count, presence 0.5, frequency 0.25:
  // id 2 (count 2): 1 - (0.5 + 0.5) = 0; id 3 (count 1): 1 - (0.5 + 0.25) = 0.25.
  std::vector<float> logits = {1.0f, 1.0f, 1.0f, 1.0f};
  apply_penalties(logits, std::vector<int32_t>{2, 3, 2}, 1.0f, 0.5f, 0.25f);
  EXPECT_EQ(logits, (std::vector<float>{1.0f, 1.0f, 0.0f, 0.25f}));
  // Negative penalties encourage: 1 - (-0.5 - 0.25 * 3) = 2.25.
  logits = {1.0f, 1.0f};
  apply_penalties(logits, std::vector<int32_t>{1, 1, 1}, 1.0f, -0.5f, -0.25f);
  EXPECT_EQ(logits, (std::vector<float>{1.0f, 2.25f}));
}

TEST(SamplingSteps, RepetitionPenaltyComesBeforePresence) {
  // 3 / 2 - 1 = 0.5 (presence first would give (3 - 1) / 2 = 1).
  std::vector<float> logits = {3.0f, 0.0f};
  apply_penalties(logits, std::vector<int32_t>{0}, 2.0f, 1.0f, 0.0f);
  EXPECT_EQ(logits[0], 0.5f);
}

TEST(SamplingSteps, LogitBiasAddsAndComesAfterPenalties) {
  std::vector<float> logits = {0.0f, 0.0f, 0.0f};
  const std::vector<std::pair<int32_t, float>> bias = {{1, 2.0f}, {2, -100.0f}};
  apply_logit_bias(logits, bias);
  EXPECT_EQ(logits, (std::vector<float>{0.0f, 2.0f, -100.0f}));

  // Penalty then bias: 4 / 2 + 2 = 4 beats id 1's 3.5 (bias then penalty would give 3 < 3.5).
  Sampler greedy({.repetition_penalty = 2.0f, .logit_bias = {{0, 2.0f}}});
  const std::vector<float> two = {4.0f, 3.5f};
  const std::vector<int32_t> history = {0};
  EXPECT_EQ(greedy.sample(two, history).id, 0);
}

TEST(SamplingSteps, PenaltiesLookOnlyAtTheLastNIds) {
  // history [0, 0, 1] with penalty_last_n 1: only id 1 is penalised (2 / 4 = 0.5 < id 0's 1.5).
  const std::vector<float> logits = {1.5f, 2.0f};
  const std::vector<int32_t> history = {0, 0, 1};
  Sampler last_one({.repetition_penalty = 4.0f, .penalty_last_n = 1});
  EXPECT_EQ(last_one.sample(logits, history).id, 0);
  // With the whole history, both are penalised: 1.5 / 4 = 0.375 < 2 / 4 = 0.5.
  Sampler all({.repetition_penalty = 4.0f});
  EXPECT_EQ(all.sample(logits, history).id, 1);
}

TEST(SamplingSteps, TemperatureScalesLogits) {
  // softmax([0, ln 3] / 2) = [1, sqrt 3] / (1 + sqrt 3) = [0.366025, 0.633975].
  const std::vector<float> logits = {0.0f, std::log(3.0f)};
  const double s3 = std::sqrt(3.0);
  expect_distribution(distribution_of({.temperature = 2.0f}, logits), {0, 1},
                      {1 / (1 + s3), s3 / (1 + s3)});
  // At 0.5: [1, 9] / 10.
  expect_distribution(distribution_of({.temperature = 0.5f}, logits), {0, 1}, {0.1, 0.9});
}

TEST(SamplingSteps, TopKKeepsTheKBestAndTiesWithTheKth) {
  // p = [0.4, 0.3, 0.2, 0.1], k = 2: [0.4, 0.3] / 0.7 = [0.571429, 0.428571].
  const std::vector<float> logits = log_probs({0.4, 0.3, 0.2, 0.1});
  expect_distribution(distribution_of({.temperature = 1.0f, .top_k = 2}, logits), {0, 1},
                      {4.0 / 7, 3.0 / 7});
  // Ties with the k-th logit stay (as in transformers): [3, 2, 2, 1], k = 2 keeps ids 0, 1, 2,
  // softmax over [3, 2, 2] = [e, 1, 1] / (e + 2) = [0.576117, 0.211942, 0.211942].
  const double e = std::exp(1.0);
  expect_distribution(distribution_of({.temperature = 1.0f, .top_k = 2}, {3.0f, 2.0f, 2.0f, 1.0f}),
                      {0, 1, 2}, {e / (e + 2), 1 / (e + 2), 1 / (e + 2)});
  // k = 1 keeps only the argmax, the lowest id on ties.
  expect_distribution(distribution_of({.temperature = 1.0f, .top_k = 1}, {1.0f, 3.0f, 3.0f}), {1},
                      {1.0});
  // k beyond the vocabulary keeps everything.
  expect_distribution(distribution_of({.temperature = 1.0f, .top_k = 100}, logits), {0, 1, 2, 3},
                      {0.4, 0.3, 0.2, 0.1});
}

TEST(SamplingSteps, TopPKeepsTheSmallestHeadReachingP) {
  // p = [0.5, 0.3, 0.15, 0.05]. A token stays while the mass strictly above it is < top_p:
  // masses above are 0, 0.5, 0.8, 0.95.
  const std::vector<float> logits = log_probs({0.5, 0.3, 0.15, 0.05});
  // top_p 0.75: ids 0, 1 -> [0.5, 0.3] / 0.8 = [0.625, 0.375].
  expect_distribution(distribution_of({.temperature = 1.0f, .top_p = 0.75f}, logits), {0, 1},
                      {0.625, 0.375});
  // top_p 0.85: ids 0, 1, 2 -> [0.5, 0.3, 0.15] / 0.95.
  expect_distribution(distribution_of({.temperature = 1.0f, .top_p = 0.85f}, logits), {0, 1, 2},
                      {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95});
  // top_p 0.4: the most likely alone (at least one token stays).
  expect_distribution(distribution_of({.temperature = 1.0f, .top_p = 0.4f}, logits), {0}, {1.0});
  // Tied tokens are kept or cut together: [ln .4, ln .3, ln .3] with top_p 0.5 keeps all three
  // (0.4 < 0.5 is all that lies strictly above either 0.3).
  const std::vector<float> tied = log_probs({0.4, 0.3, 0.3});
  expect_distribution(distribution_of({.temperature = 1.0f, .top_p = 0.5f}, tied), {0, 1, 2},
                      {0.4, 0.3, 0.3});
}

TEST(SamplingSteps, MinPKeepsTokensAtLeastMinPTimesTheBest) {
  // p = [0.5, 0.3, 0.15, 0.05]; min_p 0.25: threshold 0.125 keeps ids 0..2 -> / 0.95.
  const std::vector<float> logits = log_probs({0.5, 0.3, 0.15, 0.05});
  expect_distribution(distribution_of({.temperature = 1.0f, .min_p = 0.25f}, logits), {0, 1, 2},
                      {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95});
  // min_p 0.7: threshold 0.35 keeps id 0 only.
  expect_distribution(distribution_of({.temperature = 1.0f, .min_p = 0.7f}, logits), {0}, {1.0});
}

TEST(SamplingSteps, TypicalKeepsTokensWhoseSurpriseIsClosestToTheEntropy) {
  // p = [0.5, 0.3, 0.15, 0.05]: -ln p = [0.693147, 1.203973, 1.897120, 2.995732];
  // H = 0.5*0.693147 + 0.3*1.203973 + 0.15*1.897120 + 0.05*2.995732 = 1.142120;
  // |-ln p - H| = [0.448973, 0.061853, 0.755000, 1.853612]: rank id 1, 0, 2, 3 with cumulative
  // probability 0.3, 0.8, 0.95, 1.
  const std::vector<float> logits = log_probs({0.5, 0.3, 0.15, 0.05});
  // typical_p 0.5: the first rank reaching 0.5 is id 0 (0.8): keep ids 1, 0 -> [0.625, 0.375].
  expect_distribution(distribution_of({.temperature = 1.0f, .typical_p = 0.5f}, logits), {0, 1},
                      {0.625, 0.375});
  // typical_p 0.25: id 1 alone, though id 0 is the most likely.
  expect_distribution(distribution_of({.temperature = 1.0f, .typical_p = 0.25f}, logits), {1},
                      {1.0});
  // typical_p 0.9: ids 1, 0, 2 -> [0.5, 0.3, 0.15] / 0.95.
  expect_distribution(distribution_of({.temperature = 1.0f, .typical_p = 0.9f}, logits), {0, 1, 2},
                      {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95});
}

TEST(SamplingChain, TemperatureComesBeforeMinP) {
  // p = [0.5, 0.3, 0.15, 0.05] at temperature 0.5 becomes p^2 normalised; relative to the best:
  // [1, 0.36, 0.09, 0.01]. min_p 0.2 keeps ids 0, 1: [0.25, 0.09] / 0.34 = [0.735294, 0.264706].
  // (min-p before temperature would have kept id 2 too: 0.15 / 0.5 = 0.3 >= 0.2.)
  const std::vector<float> logits = log_probs({0.5, 0.3, 0.15, 0.05});
  expect_distribution(distribution_of({.temperature = 0.5f, .min_p = 0.2f}, logits), {0, 1},
                      {0.25 / 0.34, 0.09 / 0.34});
}

TEST(SamplingChain, TopKComesBeforeTopP) {
  // p = [0.4, 0.3, 0.2, 0.1]; top-k 2 renormalises to [0.571429, 0.428571]; then top-p 0.5 cuts
  // id 1 (0.571 above it >= 0.5). Top-p first would have kept ids 0, 1 (0.4 < 0.5).
  const std::vector<float> logits = log_probs({0.4, 0.3, 0.2, 0.1});
  expect_distribution(distribution_of({.temperature = 1.0f, .top_k = 2, .top_p = 0.5f}, logits),
                      {0}, {1.0});
}

TEST(SamplingChain, TemperatureComesBeforeTopP) {
  // p = [0.5, 0.3, 0.15, 0.05] at temperature 2 becomes sqrt(p) normalised:
  // sqrt = [0.707107, 0.547723, 0.387298, 0.223607], sum 1.865735 -> [0.378994, 0.293567,
  // 0.207585, 0.119849]. top_p 0.75: masses above 0, 0.379, 0.673 (< 0.75), 0.880: ids 0..2,
  // renormalised over 0.880146. (Top-p before temperature would keep ids 0, 1 only.)
  const std::vector<float> logits = log_probs({0.5, 0.3, 0.15, 0.05});
  const double s[] = {std::sqrt(0.5), std::sqrt(0.3), std::sqrt(0.15)};
  const double kept = s[0] + s[1] + s[2];
  expect_distribution(distribution_of({.temperature = 2.0f, .top_p = 0.75f}, logits), {0, 1, 2},
                      {s[0] / kept, s[1] / kept, s[2] / kept});
}

TEST(SamplingChain, GreedyTakesTheArgmaxAfterPenaltiesAndBias) {
  // [3, 2.5] with id 0 in the history and penalty 2: [1.5, 2.5] -> id 1.
  Sampler greedy({.repetition_penalty = 2.0f});
  const std::vector<float> logits = {3.0f, 2.5f};
  EXPECT_EQ(greedy.sample(logits, std::vector<int32_t>{0}).id, 1);
  EXPECT_EQ(greedy.sample(logits).id, 0);
  // Ties go to the lowest id; a -inf bias bans.
  Sampler banned({.logit_bias = {{0, -INFINITY}}});
  EXPECT_EQ(banned.sample(std::vector<float>{2.0f, 1.0f, 2.0f}).id, 2);
  Sampler tie({});
  EXPECT_EQ(tie.sample(std::vector<float>{1.0f, 2.0f, 2.0f}).id, 1);
  expect_distribution(tie.distribution(std::vector<float>{1.0f, 2.0f, 2.0f}), {1}, {1.0});
  EXPECT_EQ(argmax(std::vector<float>{0.5f, 3.0f, -1.0f, 3.0f}), 1);
}

TEST(SamplingLogprobs, AreTheLogSoftmaxAfterPenaltiesBeforeTemperatureAndTruncation) {
  // p = [0.5, 0.3, 0.2]: the logprobs are ln p whatever temperature and top-k do.
  const std::vector<float> logits = log_probs({0.5, 0.3, 0.2});
  Sampler sampler({.temperature = 0.3f, .top_k = 1, .top_logprobs = 2});
  const SampledToken token = sampler.sample(logits);
  EXPECT_EQ(token.id, 0);
  EXPECT_NEAR(token.logprob, std::log(0.5), kTol);
  ASSERT_EQ(token.top.size(), 2u);
  EXPECT_EQ(token.top[0].id, 0);
  EXPECT_NEAR(token.top[0].logprob, std::log(0.5), kTol);
  EXPECT_EQ(token.top[1].id, 1);
  EXPECT_NEAR(token.top[1].logprob, std::log(0.3), kTol);

  // After a repetition penalty of 2 on id 0: logits [ln .5 * 2, ln .3, ln .2] (ln .5 < 0), so
  // p = [0.25, 0.3, 0.2] / 0.75 = [0.333333, 0.4, 0.266667].
  Sampler greedy({.repetition_penalty = 2.0f, .top_logprobs = 20});
  const SampledToken penalised = greedy.sample(logits, std::vector<int32_t>{0});
  EXPECT_EQ(penalised.id, 1);
  EXPECT_NEAR(penalised.logprob, std::log(0.4), kTol);
  ASSERT_EQ(penalised.top.size(), 3u);  // no more alternatives than tokens
  EXPECT_EQ(penalised.top[0].id, 1);
  EXPECT_EQ(penalised.top[1].id, 0);
  EXPECT_NEAR(penalised.top[1].logprob, std::log(0.25 / 0.75), kTol);
  EXPECT_EQ(penalised.top[2].id, 2);

  Sampler none({.temperature = 1.0f});
  EXPECT_TRUE(none.sample(logits).top.empty());
}

// Expects constructing a Sampler from `params` to throw af::Error mentioning `field`.
void expect_bad_param(const SamplingParams& params, const std::string& field) {
  try {
    Sampler sampler(params);
    ADD_FAILURE() << "no error for " << field;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
  }
}

TEST(SamplingParamsCheck, OutOfRangeParametersNameTheField) {
  expect_bad_param({.temperature = -1.0f}, "temperature");
  expect_bad_param({.temperature = NAN}, "temperature");
  expect_bad_param({.temperature = INFINITY}, "temperature");
  expect_bad_param({.top_k = -1}, "top_k");
  expect_bad_param({.top_p = 0.0f}, "top_p");
  expect_bad_param({.top_p = 1.5f}, "top_p");
  expect_bad_param({.top_p = NAN}, "top_p");
  expect_bad_param({.min_p = -0.1f}, "min_p");
  expect_bad_param({.min_p = 1.1f}, "min_p");
  expect_bad_param({.min_p = NAN}, "min_p");
  expect_bad_param({.typical_p = 0.0f}, "typical_p");
  expect_bad_param({.typical_p = 2.0f}, "typical_p");
  expect_bad_param({.repetition_penalty = 0.0f}, "repetition_penalty");
  expect_bad_param({.repetition_penalty = -1.0f}, "repetition_penalty");
  expect_bad_param({.repetition_penalty = NAN}, "repetition_penalty");
  expect_bad_param({.presence_penalty = NAN}, "presence_penalty");
  expect_bad_param({.frequency_penalty = INFINITY}, "frequency_penalty");
  expect_bad_param({.penalty_last_n = -1}, "penalty_last_n");
  expect_bad_param({.top_logprobs = 21}, "top_logprobs");
  expect_bad_param({.top_logprobs = -1}, "top_logprobs");
  expect_bad_param({.logit_bias = {{3, 1.0f}, {-1, 1.0f}}}, "logit_bias[1]");
  expect_bad_param({.logit_bias = {{3, NAN}}}, "logit_bias[0]");
  expect_bad_param({.logit_bias = {{3, INFINITY}}}, "logit_bias[0]");
  EXPECT_NO_THROW(Sampler({.temperature = 0.7f,
                           .top_k = 40,
                           .top_p = 1.0f,
                           .min_p = 1.0f,
                           .typical_p = 0.5f,
                           .top_logprobs = 20}));
}

// Expects sampling these inputs to throw af::Error mentioning `what`.
void expect_bad_input(const SamplingParams& params, const std::vector<float>& logits,
                      const std::vector<int32_t>& history, const std::string& what) {
  Sampler sampler(params);
  try {
    sampler.sample(logits, history);
    ADD_FAILURE() << "no error for " << what;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

TEST(SamplingParamsCheck, BadLogitsAndHistoriesAreErrors) {
  const SamplingParams temp{.temperature = 1.0f};
  expect_bad_input(temp, {}, {}, "empty logits");
  expect_bad_input(temp, {0.0f, NAN}, {}, "logits[1]");
  expect_bad_input(temp, {0.0f, INFINITY}, {}, "logits[1]");
  expect_bad_input(temp, {-INFINITY, -INFINITY}, {}, "finite");
  expect_bad_input({}, {-INFINITY, -INFINITY}, {}, "finite");
  expect_bad_input(temp, {0.0f, 1.0f}, {0, 1, 2}, "history[2]");
  expect_bad_input(temp, {0.0f, 1.0f}, {-1}, "history[0]");
  expect_bad_input({.logit_bias = {{5, 1.0f}}}, {0.0f, 1.0f}, {}, "logit_bias[0]");
  expect_bad_input({.temperature = 1.0f, .logit_bias = {{0, -INFINITY}, {1, -INFINITY}}},
                   {0.0f, 1.0f}, {}, "finite");
}

}  // namespace
}  // namespace af::ops
