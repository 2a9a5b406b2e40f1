// Sampling statistics and determinism: draw frequencies against the distribution (chi-square),
// top-k 1 against greedy, seeds, the documented draw (one 64-bit number per token, inverse CDF in
// id order), and the fast paths against plain full-sort references on random inputs.
#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "af/ops/sampling.hpp"
#include "test_util.hpp"

namespace af::ops {
namespace {

// Pearson's chi-square statistic of observed counts against expected probabilities.
double chi_square(const std::vector<int>& counts, const std::vector<double>& probs, int n) {
  double chi2 = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double expected = probs[i] * n;
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  return chi2;
}

TEST(SamplingStats, FrequenciesMatchTheDistribution) {
  // p = [0.4, 0.25, 0.15, 0.1, 0.06, 0.04] at temperature 1; 5 degrees of freedom, whose
  // chi-square 99.9% quantile is 20.515.
  const std::vector<double> p = {0.4, 0.25, 0.15, 0.1, 0.06, 0.04};
  std::vector<float> logits;
  for (double x : p) logits.push_back(static_cast<float>(std::log(x)));
  Sampler sampler({.temperature = 1.0f, .seed = 2024});
  const int n = 200000;
  std::vector<int> counts(p.size());
  for (int i = 0; i < n; ++i) ++counts[static_cast<size_t>(sampler.sample(logits).id)];
  EXPECT_LT(chi_square(counts, p, n), 20.515);
}

TEST(SamplingStats, FrequenciesMatchTheTruncatedTemperedDistribution) {
  // 12 random logits, temperature 0.7, top-k 6, top-p 0.9: the draws follow distribution()
  // (at most 5 degrees of freedom; 99.9% quantile 20.515 bounds every smaller df too).
  const std::vector<float> logits = test::random_floats(12, -2.0f, 2.0f, 5);
  Sampler sampler({.temperature = 0.7f, .top_k = 6, .top_p = 0.9f, .seed = 77});
  const std::vector<TokenProb> dist = sampler.distribution(logits);
  ASSERT_GE(dist.size(), 3u);
  ASSERT_LE(dist.size(), 6u);
  std::vector<double> probs;
  for (const TokenProb& t : dist) probs.push_back(t.prob);
  const int n = 200000;
  std::vector<int> counts(dist.size());
  for (int i = 0; i < n; ++i) {
    const int32_t id = sampler.sample(logits).id;
    const auto it =
        std::find_if(dist.begin(), dist.end(), [&](const TokenProb& t) { return t.id == id; });
    ASSERT_NE(it, dist.end()) << "drew " << id << ", which the chain cut";
    ++counts[static_cast<size_t>(it - dist.begin())];
  }
  EXPECT_LT(chi_square(counts, probs, n), 20.515);
}

TEST(SamplingStats, OneDrawPerTokenByInverseCdfInIdOrder) {
  // The documented draw: u = top 53 bits of one mt19937_64 output / 2^53, then the first id (in
  // ascending order) whose cumulative probability exceeds u. Reproducing it here pins the
  // sequence on every platform.
  const std::vector<double> p = {0.1, 0.2, 0.3, 0.4};
  std::vector<float> logits;
  for (double x : p) logits.push_back(static_cast<float>(std::log(x)));
  Sampler sampler({.temperature = 1.0f, .seed = 42});
  std::mt19937_64 reference(42);
  for (int i = 0; i < 1000; ++i) {
    const double u = static_cast<double>(reference() >> 11) * 0x1.0p-53;
    int32_t expected = 3;
    double cumulative = 0;
    for (int32_t id = 0; id < 4; ++id) {
      cumulative += p[static_cast<size_t>(id)];
      if (u < cumulative) {
        expected = id;
        break;
      }
    }
    // Away from the cumulative boundaries, where float logits cannot move the answer.
    const double nearest = std::min({std::abs(u - 0.1), std::abs(u - 0.3), std::abs(u - 0.6)});
    if (nearest > 1e-6) {
      EXPECT_EQ(sampler.sample(logits).id, expected) << "draw " << i;
    } else {
      sampler.sample(logits);
    }
  }
  // Greedy takes no draw: a greedy sampler's generator is untouched, so it has no effect at all.
  Sampler greedy({.seed = 42});
  for (int i = 0; i < 5; ++i) EXPECT_EQ(greedy.sample(logits).id, 3);
}

TEST(SamplingStats, TopKOneEqualsGreedy) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 200; ++trial) {
    const size_t vocab = 1 + rng() % 300;
    std::vector<float> logits = test::random_floats(vocab, -5.0f, 5.0f, rng());
    // Ties at the top, and penalties, must not make them differ either.
    if (vocab > 3 && trial % 2 == 0)
      logits[rng() % vocab] = logits[static_cast<size_t>(argmax(logits))];
    std::vector<int32_t> history;
    for (int i = 0; i < 5; ++i) history.push_back(static_cast<int32_t>(rng() % vocab));
    const float temperature = 0.1f + static_cast<float>(rng() % 30) / 10;
    Sampler greedy({.repetition_penalty = 1.3f, .presence_penalty = 0.2f});
    Sampler top1({.temperature = temperature,
                  .top_k = 1,
                  .top_p = 0.9f,
                  .repetition_penalty = 1.3f,
                  .presence_penalty = 0.2f,
                  .seed = rng()});
    EXPECT_EQ(top1.sample(logits, history).id, greedy.sample(logits, history).id)
        << "trial " << trial;
  }
}

TEST(SamplingStats, SameSeedSameSequenceDifferentSeedsDiffer) {
  const std::vector<float> logits = test::random_floats(500, -3.0f, 3.0f, 3);
  const SamplingParams params{.temperature = 1.0f, .top_p = 0.95f, .seed = 99};
  const auto run = [&](uint64_t seed) {
    SamplingParams p = params;
    p.seed = seed;
    Sampler sampler(p);
    std::vector<int32_t> ids;
    for (int i = 0; i < 200; ++i) ids.push_back(sampler.sample(logits).id);
    return ids;
  };
  const std::vector<int32_t> a = run(99);
  EXPECT_EQ(a, run(99));
  EXPECT_NE(a, run(100));
  EXPECT_NE(a, run(0));
  // Samplers running side by side on other threads draw the same sequences.
  std::vector<int32_t> b, c;
  std::thread t1([&] { b = run(99); });
  std::thread t2([&] { c = run(100); });
  t1.join();
  t2.join();
  EXPECT_EQ(b, a);
  EXPECT_EQ(c, run(100));
}

// Plain references: sort everything, then cut.
std::vector<Candidate> sorted_desc(std::vector<Candidate> c) {
  std::sort(c.begin(), c.end(), [](const Candidate& a, const Candidate& b) {
    return a.score > b.score || (a.score == b.score && a.id < b.id);
  });
  return c;
}

std::vector<int32_t> ids_of(std::vector<Candidate> c) {
  std::vector<int32_t> ids;
  for (const Candidate& x : c) ids.push_back(x.id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::vector<int32_t> reference_top_p(const std::vector<Candidate>& in, double top_p) {
  const std::vector<Candidate> c = sorted_desc(in);
  double total = 0;
  for (const Candidate& x : c) total += std::exp(x.score - c[0].score);
  std::vector<Candidate> kept;
  double above = 0, running = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    if (i > 0 && c[i].score != c[i - 1].score) above = running;
    if (i > 0 && above >= top_p * total) break;
    kept.push_back(c[i]);
    running += std::exp(c[i].score - c[0].score);
  }
  return ids_of(kept);
}

std::vector<int32_t> reference_typical(const std::vector<Candidate>& c, double mass) {
  double max = -std::numeric_limits<double>::infinity(), total = 0, entropy = 0;
  for (const Candidate& x : c) max = std::max(max, x.score);
  for (const Candidate& x : c) total += std::exp(x.score - max);
  std::vector<std::pair<double, size_t>> ranked;  // (distance, index)
  for (size_t i = 0; i < c.size(); ++i) {
    const double logp = c[i].score - max - std::log(total);
    entropy -= std::exp(logp) * logp;
  }
  for (size_t i = 0; i < c.size(); ++i) {
    const double logp = c[i].score - max - std::log(total);
    ranked.emplace_back(std::abs(-logp - entropy), i);
  }
  std::sort(ranked.begin(), ranked.end());
  double cumulative = 0;
  size_t last = ranked.size() - 1;
  for (size_t r = 0; r < ranked.size(); ++r) {
    cumulative += std::exp(c[ranked[r].second].score - max) / total;
    if (cumulative >= mass) {
      last = r;
      break;
    }
  }
  std::vector<Candidate> kept;
  for (const auto& [distance, i] : ranked) {
    if (distance <= ranked[last].first) kept.push_back(c[i]);
  }
  return ids_of(kept);
}

// Logits with ties (rounded to 0.01) and a few -inf, for n tokens.
std::vector<float> tied_logits(size_t n, float spread, uint32_t seed) {
  std::vector<float> logits = test::random_floats(n, -spread, spread, seed);
  for (size_t i = 0; i < n; ++i) {
    logits[i] = std::round(logits[i] * 100) / 100;
    if (i % 97 == 13) logits[i] = -std::numeric_limits<float>::infinity();
  }
  return logits;
}

TEST(SamplingStats, FastTopKEqualsScaleThenKeepTopK) {
  for (uint32_t seed = 0; seed < 40; ++seed) {
    const size_t n = 1 + (seed * 7919) % 3001;
    const std::vector<float> logits = tied_logits(n, 4.0f, seed);
    for (int32_t k : {1, 2, 7, 40, 255, 5000}) {
      std::vector<Candidate> slow = scale_by_temperature(logits, 0.8f);
      keep_top_k(slow, k);
      const std::vector<Candidate> fast = top_k_candidates(logits, 0.8f, k);
      ASSERT_EQ(fast.size(), slow.size()) << "n " << n << " k " << k;
      for (size_t i = 0; i < fast.size(); ++i) {
        EXPECT_EQ(fast[i].id, slow[i].id);
        EXPECT_EQ(fast[i].score, slow[i].score);
      }
      if (k > 1 && static_cast<size_t>(k) < n) {
        EXPECT_GE(fast.size(), static_cast<size_t>(k));
      }
    }
  }
}

TEST(SamplingStats, TopPAndTypicalEqualFullSortReferences) {
  // Flat logits over thousands of tokens push the cut far past the first sorted block.
  for (uint32_t seed = 0; seed < 12; ++seed) {
    const size_t n = 50 + seed * 537;
    const std::vector<float> logits = tied_logits(n, seed % 2 ? 1.0f : 6.0f, 100 + seed);
    const std::vector<Candidate> all = scale_by_temperature(logits, 1.0f);
    for (float p : {0.05f, 0.5f, 0.9f, 0.99f}) {
      std::vector<Candidate> c = all;
      keep_top_p(c, p);
      EXPECT_EQ(ids_of(c), reference_top_p(all, p)) << "top_p " << p << " n " << n;
      c = all;
      keep_typical(c, p);
      EXPECT_EQ(ids_of(c), reference_typical(all, p)) << "typical_p " << p << " n " << n;
    }
  }
}

TEST(SamplingStats, LargeVocabularyWithPenaltiesAndLongHistory) {
  // 152k tokens, an 8k-token history (the dense counting path) and a 64-token window (the sorted
  // one) give the same logits as penalising one id at a time.
  const size_t vocab = 152064;
  const std::vector<float> logits = test::random_floats(vocab, -8.0f, 8.0f, 9);
  std::vector<int32_t> history;
  std::mt19937 rng(4);
  for (int i = 0; i < 8192; ++i) history.push_back(static_cast<int32_t>(rng() % 3000));
  for (size_t window : {size_t{64}, history.size()}) {
    const std::span<const int32_t> recent = std::span<const int32_t>(history).last(window);
    std::vector<float> fast = logits;
    apply_penalties(fast, recent, 1.1f, 0.3f, 0.1f);
    std::vector<float> slow = logits;
    std::vector<int> counts(vocab);
    for (int32_t id : recent) ++counts[static_cast<size_t>(id)];
    for (size_t id = 0; id < vocab; ++id) {
      if (counts[id] == 0) continue;
      float& x = slow[id];
      x = x < 0 ? x * 1.1f : x / 1.1f;
      x -= 0.3f + 0.1f * static_cast<float>(counts[id]);
    }
    EXPECT_EQ(fast, slow) << "window " << window;
  }
}

}  // namespace
}  // namespace af::ops
