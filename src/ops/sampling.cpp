#include "af/ops/sampling.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "af/core/error.hpp"

namespace af::ops {
namespace {

constexpr const char* kComponent = "sampling";
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Most likely first; ties by lower id, so every ordering here is fully determined.
bool by_score_desc(const Candidate& a, const Candidate& b) {
  return a.score > b.score || (a.score == b.score && a.id < b.id);
}

double max_score(const std::vector<Candidate>& candidates) {
  double best = kNegInf;
  for (const Candidate& c : candidates) best = std::max(best, c.score);
  return best;
}

// The ids of the n largest values (n clamped to the size), largest first, ties by lower id, in
// one pass with a heap of n: the cost stays O(size) for the small n that top-k and top logprobs
// use.
std::vector<int32_t> best_ids(std::span<const float> values, size_t n) {
  n = std::min(n, values.size());
  if (n == 0) return {};
  // Heap whose front is the worst id kept: the smallest value, on ties the largest id.
  const auto better = [&](int32_t a, int32_t b) {
    const float va = values[static_cast<size_t>(a)], vb = values[static_cast<size_t>(b)];
    return va > vb || (va == vb && a < b);
  };
  std::vector<int32_t> heap(n);
  for (size_t i = 0; i < n; ++i) heap[i] = static_cast<int32_t>(i);
  std::make_heap(heap.begin(), heap.end(), better);
  for (size_t i = n; i < values.size(); ++i) {
    // Later ids lose ties, so only a strictly larger value displaces the worst kept.
    if (values[i] > values[static_cast<size_t>(heap.front())]) {
      std::pop_heap(heap.begin(), heap.end(), better);
      heap.back() = static_cast<int32_t>(i);
      std::push_heap(heap.begin(), heap.end(), better);
    }
  }
  std::sort_heap(heap.begin(), heap.end(), better);
  return heap;
}

void check_id_in_vocab(int64_t id, size_t vocab, const char* what, size_t index) {
  AF_CHECK(id >= 0 && static_cast<uint64_t>(id) < vocab, ErrorCode::kInvalidArgument, kComponent,
           what, "[", index, "] = ", id, " is outside the vocabulary of ", vocab, " tokens");
}

// (id, occurrences) for every distinct id of `history`, ids in [0, vocab).
std::vector<std::pair<int32_t, int32_t>> count_ids(std::span<const int32_t> history, size_t vocab) {
  std::vector<std::pair<int32_t, int32_t>> counts;
  if (history.size() * 8 < vocab) {
    // Short windows (the usual penalty_last_n): sorting a copy beats touching a vocab-sized array.
    std::vector<int32_t> sorted(history.begin(), history.end());
    std::sort(sorted.begin(), sorted.end());
    for (size_t i = 0; i < sorted.size();) {
      size_t j = i;
      while (j < sorted.size() && sorted[j] == sorted[i]) ++j;
      counts.emplace_back(sorted[i], static_cast<int32_t>(j - i));
      i = j;
    }
  } else {
    std::vector<int32_t> dense(vocab, 0);
    for (int32_t id : history) ++dense[static_cast<size_t>(id)];
    for (size_t id = 0; id < vocab; ++id) {
      if (dense[id] > 0) counts.emplace_back(static_cast<int32_t>(id), dense[id]);
    }
  }
  return counts;
}

}  // namespace

int32_t argmax(std::span<const float> logits) {
  AF_CHECK(!logits.empty(), ErrorCode::kInvalidArgument, kComponent, "empty logits");
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

void apply_penalties(std::span<float> logits, std::span<const int32_t> history,
                     float repetition_penalty, float presence_penalty, float frequency_penalty) {
  if (repetition_penalty == 1.0f && presence_penalty == 0.0f && frequency_penalty == 0.0f) return;
  for (size_t i = 0; i < history.size(); ++i) {
    check_id_in_vocab(history[i], logits.size(), "history", i);
  }
  for (const auto& [id, count] : count_ids(history, logits.size())) {
    float& logit = logits[static_cast<size_t>(id)];
    if (repetition_penalty != 1.0f) {
      logit = logit < 0 ? logit * repetition_penalty : logit / repetition_penalty;
    }
    logit -= presence_penalty + frequency_penalty * static_cast<float>(count);
  }
}

void apply_logit_bias(std::span<float> logits,
                      std::span<const std::pair<int32_t, float>> logit_bias) {
  for (size_t i = 0; i < logit_bias.size(); ++i) {
    check_id_in_vocab(logit_bias[i].first, logits.size(), "logit_bias", i);
    logits[static_cast<size_t>(logit_bias[i].first)] += logit_bias[i].second;
  }
}

std::vector<Candidate> scale_by_temperature(std::span<const float> logits, float temperature) {
  AF_CHECK(temperature > 0, ErrorCode::kInvalidArgument, kComponent,
           "temperature must be > 0 to scale by it, got ", temperature);
  std::vector<Candidate> candidates;
  candidates.reserve(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] == -std::numeric_limits<float>::infinity()) continue;
    candidates.push_back({static_cast<int32_t>(i), static_cast<double>(logits[i]) / temperature});
  }
  return candidates;
}

std::vector<Candidate> top_k_candidates(std::span<const float> logits, float temperature,
                                        int32_t top_k) {
  AF_CHECK(top_k >= 1, ErrorCode::kInvalidArgument, kComponent, "top_k must be >= 1, got ", top_k);
  AF_CHECK(temperature > 0, ErrorCode::kInvalidArgument, kComponent,
           "temperature must be > 0 to scale by it, got ", temperature);
  if (static_cast<size_t>(top_k) >= logits.size()) {
    std::vector<Candidate> all = scale_by_temperature(logits, temperature);
    keep_top_k(all, top_k);
    return all;
  }
  // Dividing by a positive temperature in double keeps distinct floats distinct and in order, so
  // selecting on the raw logits selects the same tokens as selecting on the scaled ones.
  const std::vector<int32_t> best = best_ids(logits, static_cast<size_t>(top_k));
  std::vector<Candidate> kept;
  const auto add = [&](int32_t id) {
    const float logit = logits[static_cast<size_t>(id)];
    if (logit != -std::numeric_limits<float>::infinity()) {
      kept.push_back({id, static_cast<double>(logit) / temperature});
    }
  };
  if (top_k == 1) {
    add(best[0]);
  } else {
    // Like transformers, every token tied with the k-th largest logit stays.
    const float threshold = logits[static_cast<size_t>(best.back())];
    for (size_t i = 0; i < logits.size(); ++i) {
      if (logits[i] >= threshold) add(static_cast<int32_t>(i));
    }
  }
  std::sort(kept.begin(), kept.end(), by_score_desc);
  return kept;
}

void keep_top_k(std::vector<Candidate>& candidates, int32_t top_k) {
  AF_CHECK(top_k >= 1, ErrorCode::kInvalidArgument, kComponent, "top_k must be >= 1, got ", top_k);
  const size_t k = static_cast<size_t>(top_k);
  if (k < candidates.size()) {
    std::nth_element(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(k - 1),
                     candidates.end(), by_score_desc);
    if (k == 1) {
      candidates.resize(1);
      return;
    }
    const double threshold = candidates[k - 1].score;
    const auto tail =
        std::remove_if(candidates.begin() + static_cast<std::ptrdiff_t>(k), candidates.end(),
                       [&](const Candidate& c) { return c.score < threshold; });
    candidates.erase(tail, candidates.end());
  }
  std::sort(candidates.begin(), candidates.end(), by_score_desc);
}

void keep_top_p(std::vector<Candidate>& candidates, float top_p) {
  AF_CHECK(top_p > 0 && top_p <= 1, ErrorCode::kInvalidArgument, kComponent,
           "top_p must be in (0, 1], got ", top_p);
  if (top_p >= 1.0f || candidates.size() <= 1) return;
  const double max = max_score(candidates);
  double total = 0;
  for (const Candidate& c : candidates) total += std::exp(c.score - max);
  const double mass = static_cast<double>(top_p) * total;
  // Sort only as much of the head as the cut needs: grow the sorted prefix until it holds the cut.
  const size_t n = candidates.size();
  for (size_t sorted = std::min<size_t>(n, 128);; sorted = std::min(n, sorted * 4)) {
    std::partial_sort(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(sorted),
                      candidates.end(), by_score_desc);
    double running = 0;  // at a new score: the mass of the tokens strictly more likely
    for (size_t i = 0; i < sorted; ++i) {
      if (i > 0 && candidates[i].score != candidates[i - 1].score && running >= mass) {
        candidates.resize(i);
        return;
      }
      running += std::exp(candidates[i].score - max);
    }
    if (sorted == n) return;
  }
}

void keep_min_p(std::vector<Candidate>& candidates, float min_p) {
  AF_CHECK(min_p >= 0 && min_p <= 1, ErrorCode::kInvalidArgument, kComponent,
           "min_p must be in [0, 1], got ", min_p);
  if (min_p <= 0.0f || candidates.empty()) return;
  const double max = max_score(candidates);
  const double threshold = static_cast<double>(min_p);
  // p_i < min_p * p_max  <=>  exp(score_i - max) < min_p; the most likely token always stays.
  std::erase_if(candidates,
                [&](const Candidate& c) { return std::exp(c.score - max) < threshold; });
}

void keep_typical(std::vector<Candidate>& candidates, float typical_p) {
  AF_CHECK(typical_p > 0 && typical_p <= 1, ErrorCode::kInvalidArgument, kComponent,
           "typical_p must be in (0, 1], got ", typical_p);
  const size_t n = candidates.size();
  if (typical_p >= 1.0f || n <= 1) return;
  const double max = max_score(candidates);
  double total = 0;
  for (const Candidate& c : candidates) total += std::exp(c.score - max);
  const double log_total = std::log(total);
  double entropy = 0;
  for (const Candidate& c : candidates) {
    const double logp = c.score - max - log_total;
    entropy -= std::exp(logp) * logp;
  }
  // Rank by how far each token's surprise lies from the entropy (the "typical" ones first).
  struct Ranked {
    double distance;  // |-log p - H|
    double prob;
    int32_t id;
    size_t index;
  };
  std::vector<Ranked> ranked(n);
  for (size_t i = 0; i < n; ++i) {
    const double logp = candidates[i].score - max - log_total;
    ranked[i] = {std::abs(-logp - entropy), std::exp(logp), candidates[i].id, i};
  }
  const auto closer = [](const Ranked& a, const Ranked& b) {
    return a.distance < b.distance || (a.distance == b.distance && a.id < b.id);
  };
  // As transformers: the first rank whose cumulative probability reaches typical_p (or the last
  // one) sets a distance threshold, and every token at most that far stays (ties included).
  double threshold = 0;
  for (size_t sorted = std::min<size_t>(n, 128);; sorted = std::min(n, sorted * 4)) {
    std::partial_sort(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(sorted),
                      ranked.end(), closer);
    double cumulative = 0;
    size_t last = sorted;
    for (size_t i = 0; i < sorted; ++i) {
      cumulative += ranked[i].prob;
      if (cumulative >= typical_p) {
        last = i;
        break;
      }
    }
    if (last < sorted || sorted == n) {
      threshold = ranked[std::min(last, n - 1)].distance;
      break;
    }
  }
  std::vector<Candidate> kept;
  for (const Ranked& r : ranked) {
    if (r.distance <= threshold) kept.push_back(candidates[r.index]);
  }
  candidates = std::move(kept);
}

std::vector<TokenProb> candidate_probabilities(std::vector<Candidate> candidates) {
  std::sort(candidates.begin(), candidates.end(),
            [](const Candidate& a, const Candidate& b) { return a.id < b.id; });
  const double max = max_score(candidates);
  std::vector<TokenProb> probs(candidates.size());
  double total = 0;
  for (size_t i = 0; i < candidates.size(); ++i) {
    probs[i] = {candidates[i].id, std::exp(candidates[i].score - max)};
    total += probs[i].prob;
  }
  for (TokenProb& p : probs) p.prob /= total;
  return probs;
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {
  const auto check = [](bool ok, const char* field, const char* rule, auto value) {
    AF_CHECK(ok, ErrorCode::kInvalidArgument, kComponent, field, " must be ", rule, ", got ",
             value);
  };
  const SamplingParams& p = params;
  check(std::isfinite(p.temperature) && p.temperature >= 0, "temperature", "finite and >= 0",
        p.temperature);
  check(p.top_k >= 0, "top_k", ">= 0 (0: off)", p.top_k);
  check(p.top_p > 0 && p.top_p <= 1, "top_p", "in (0, 1] (1: off)", p.top_p);
  check(p.min_p >= 0 && p.min_p <= 1, "min_p", "in [0, 1] (0: off)", p.min_p);
  check(p.typical_p > 0 && p.typical_p <= 1, "typical_p", "in (0, 1] (1: off)", p.typical_p);
  check(std::isfinite(p.repetition_penalty) && p.repetition_penalty > 0, "repetition_penalty",
        "finite and > 0 (1: off)", p.repetition_penalty);
  check(std::isfinite(p.presence_penalty), "presence_penalty", "finite", p.presence_penalty);
  check(std::isfinite(p.frequency_penalty), "frequency_penalty", "finite", p.frequency_penalty);
  check(p.penalty_last_n >= 0, "penalty_last_n", ">= 0 (0: the whole history)", p.penalty_last_n);
  check(p.top_logprobs >= 0 && p.top_logprobs <= kMaxTopLogprobs, "top_logprobs", "in [0, 20]",
        p.top_logprobs);
  for (size_t i = 0; i < p.logit_bias.size(); ++i) {
    const auto& [id, bias] = p.logit_bias[i];
    const std::string field = "logit_bias[" + std::to_string(i) + "]";
    AF_CHECK(id >= 0, ErrorCode::kInvalidArgument, kComponent, field,
             ": token id must be >= 0, got ", id);
    AF_CHECK(!std::isnan(bias) && bias != std::numeric_limits<float>::infinity(),
             ErrorCode::kInvalidArgument, kComponent, field,
             ": bias must be finite or -inf (a ban), got ", bias);
  }
}

void Sampler::prepare(std::span<const float> logits, std::span<const int32_t> history) {
  AF_CHECK(!logits.empty(), ErrorCode::kInvalidArgument, kComponent, "empty logits");
  AF_CHECK(logits.size() <= static_cast<size_t>(std::numeric_limits<int32_t>::max()),
           ErrorCode::kInvalidArgument, kComponent, "vocabulary of ", logits.size(),
           " tokens is too large");
  const size_t vocab = logits.size();
  for (size_t i = 0; i < vocab; ++i) {
    AF_CHECK(!std::isnan(logits[i]) && logits[i] != std::numeric_limits<float>::infinity(),
             ErrorCode::kInvalidArgument, kComponent, "logits[", i, "] is ", logits[i]);
  }
  for (size_t i = 0; i < history.size(); ++i) check_id_in_vocab(history[i], vocab, "history", i);
  work_.assign(logits.begin(), logits.end());
  const size_t window = params_.penalty_last_n > 0
                            ? std::min(history.size(), static_cast<size_t>(params_.penalty_last_n))
                            : history.size();
  apply_penalties(work_, history.last(window), params_.repetition_penalty, params_.presence_penalty,
                  params_.frequency_penalty);
  apply_logit_bias(work_, params_.logit_bias);
  float best = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < vocab; ++i) {
    AF_CHECK(!std::isnan(work_[i]) && work_[i] != std::numeric_limits<float>::infinity(),
             ErrorCode::kInvalidArgument, kComponent, "penalties and logit_bias made logit ", i,
             " ", work_[i]);
    best = std::max(best, work_[i]);
  }
  AF_CHECK(best != -std::numeric_limits<float>::infinity(), ErrorCode::kInvalidArgument, kComponent,
           "no token has a finite logit (all -inf after penalties and logit_bias)");
}

std::vector<Candidate> Sampler::truncate() const {
  // transformers' order: temperature, top-k, top-p, min-p, typical-p.
  std::vector<Candidate> candidates =
      params_.top_k > 0 ? top_k_candidates(work_, params_.temperature, params_.top_k)
                        : scale_by_temperature(work_, params_.temperature);
  keep_top_p(candidates, params_.top_p);
  keep_min_p(candidates, params_.min_p);
  keep_typical(candidates, params_.typical_p);
  return candidates;
}

std::vector<TokenProb> Sampler::distribution(std::span<const float> logits,
                                             std::span<const int32_t> history) {
  prepare(logits, history);
  if (params_.temperature == 0.0f) return {{argmax(work_), 1.0}};
  return candidate_probabilities(truncate());
}

SampledToken Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
  prepare(logits, history);
  SampledToken token{};
  if (params_.temperature == 0.0f) {
    token.id = argmax(work_);
  } else {
    const std::vector<TokenProb> probs = candidate_probabilities(truncate());
    // u in [0, 1) from the top 53 bits of one draw: the same on every platform.
    const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
    double cumulative = 0;
    token.id = -1;
    for (const TokenProb& p : probs) {
      if (p.prob <= 0) continue;
      token.id = p.id;  // where rounding leaves u past the total: the last possible token
      cumulative += p.prob;
      if (u < cumulative) break;
    }
  }
  // log-softmax over the penalised, biased logits (before temperature and truncation).
  const float max = work_[static_cast<size_t>(argmax(work_))];
  double sum = 0;
  for (float x : work_) sum += std::exp(x - max);
  const double log_z = static_cast<double>(max) + std::log(sum);
  const auto logprob = [&](int32_t id) {
    return static_cast<float>(static_cast<double>(work_[static_cast<size_t>(id)]) - log_z);
  };
  token.logprob = logprob(token.id);
  for (int32_t id : best_ids(work_, static_cast<size_t>(params_.top_logprobs))) {
    token.top.push_back({id, logprob(id)});
  }
  return token;
}

}  // namespace af::ops
