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
constexpr float kInfF = std::numeric_limits<float>::infinity();

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

// A key to order by (smaller first) and the probability mass it carries.
struct KeyedWeight {
  double key;
  double weight;
};

// The smallest key t such that the items with key <= t weigh at least `target`, or +inf when all
// of them together weigh less. This is where top-p and typical-p cut; a weighted quickselect finds
// it in expected O(n) (a full sort of a 152k vocabulary would cost several milliseconds).
// Reorders `items`.
double weighted_threshold(std::vector<KeyedWeight>& items, double target) {
  size_t lo = 0, hi = items.size();
  double below = 0;  // weight of the items known to have a smaller key than all of [lo, hi)
  for (int round = 0; lo < hi; ++round) {
    if (round == 64) {
      // Pathological pivots: finish by sorting what is left.
      std::sort(items.begin() + static_cast<std::ptrdiff_t>(lo),
                items.begin() + static_cast<std::ptrdiff_t>(hi),
                [](const KeyedWeight& a, const KeyedWeight& b) { return a.key < b.key; });
      for (size_t i = lo; i < hi; ++i) {
        below += items[i].weight;
        if (below >= target && (i + 1 == hi || items[i + 1].key != items[i].key)) {
          return items[i].key;
        }
      }
      break;
    }
    // Median of three as the pivot, then a three-way partition: [lo, lt) < pivot, [lt, gt) ==,
    // [gt, hi) >.
    const double a = items[lo].key, b = items[lo + (hi - lo) / 2].key, c = items[hi - 1].key;
    const double pivot = std::max(std::min(a, b), std::min(std::max(a, b), c));
    size_t lt = lo, i = lo, gt = hi;
    double less = 0, equal = 0;
    while (i < gt) {
      if (items[i].key < pivot) {
        less += items[i].weight;
        std::swap(items[lt++], items[i++]);
      } else if (items[i].key > pivot) {
        std::swap(items[i], items[--gt]);
      } else {
        equal += items[i++].weight;
      }
    }
    if (below + less >= target) {
      hi = lt;
    } else if (below + less + equal >= target) {
      return pivot;
    } else {
      below += less + equal;
      lo = gt;
    }
  }
  return std::numeric_limits<double>::infinity();
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
  // A token stays when the mass of the tokens strictly more likely than it is below top_p: with
  // key = -score, exactly the tokens whose key is at most the threshold below.
  const double max = max_score(candidates);
  std::vector<KeyedWeight> items(candidates.size());
  double total = 0;
  for (size_t i = 0; i < candidates.size(); ++i) {
    items[i] = {-candidates[i].score, std::exp(candidates[i].score - max)};
    total += items[i].weight;
  }
  const double threshold = weighted_threshold(items, static_cast<double>(top_p) * total);
  std::erase_if(candidates, [&](const Candidate& c) { return -c.score > threshold; });
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
  // Rank by how far each token's surprise lies from the entropy (the "typical" ones first). As in
  // transformers, the first rank whose cumulative probability reaches typical_p sets a distance
  // threshold, and every token at most that far stays (ties included).
  std::vector<double> distance(n);
  std::vector<KeyedWeight> items(n);
  for (size_t i = 0; i < n; ++i) {
    const double logp = candidates[i].score - max - log_total;
    distance[i] = std::abs(-logp - entropy);
    items[i] = {distance[i], std::exp(logp)};
  }
  const double threshold = weighted_threshold(items, static_cast<double>(typical_p));
  size_t kept = 0;
  for (size_t i = 0; i < n; ++i) {
    if (distance[i] <= threshold) candidates[kept++] = candidates[i];
  }
  candidates.resize(kept);
}

std::vector<TokenProb> candidate_probabilities(std::vector<Candidate> candidates) {
  const auto by_id = [](const Candidate& a, const Candidate& b) { return a.id < b.id; };
  if (!std::is_sorted(candidates.begin(), candidates.end(), by_id)) {
    std::sort(candidates.begin(), candidates.end(), by_id);
  }
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
  for (int32_t id : masked_) {
    if (static_cast<size_t>(id) < vocab) work_[static_cast<size_t>(id)] = -kInfF;
  }
  float best = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < vocab; ++i) {
    AF_CHECK(!std::isnan(work_[i]) && work_[i] != std::numeric_limits<float>::infinity(),
             ErrorCode::kInvalidArgument, kComponent, "penalties and logit_bias made logit ", i,
             " ", work_[i]);
    best = std::max(best, work_[i]);
  }
  AF_CHECK(best != -std::numeric_limits<float>::infinity(), ErrorCode::kInvalidArgument, kComponent,
           "no token has a finite logit (all -inf after penalties, logit_bias and the mask of "
           "ids without text)");
}

void Sampler::set_masked_ids(std::vector<int32_t> ids) {
  for (int32_t id : ids) {
    AF_CHECK(id >= 0, ErrorCode::kInvalidArgument, kComponent, "masked token id ", id, " < 0");
  }
  masked_ = std::move(ids);
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
    if (work_[static_cast<size_t>(id)] == -kInfF) break;  // most likely first: the rest are too
    token.top.push_back({id, logprob(id)});
  }
  return token;
}

}  // namespace af::ops
