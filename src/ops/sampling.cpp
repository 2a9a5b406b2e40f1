#include "af/ops/sampling.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "af/core/error.hpp"

namespace af::ops {

int32_t argmax(std::span<const float> logits) {
  AF_CHECK(!logits.empty(), ErrorCode::kInvalidArgument, "sampling", "empty logits");
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {
  AF_CHECK(params.temperature >= 0 && std::isfinite(params.temperature),
           ErrorCode::kInvalidArgument, "sampling", "temperature must be >= 0, got ",
           params.temperature);
  AF_CHECK(params.top_k >= 0, ErrorCode::kInvalidArgument, "sampling", "top_k must be >= 0, got ",
           params.top_k);
  AF_CHECK(params.top_p > 0 && params.top_p <= 1, ErrorCode::kInvalidArgument, "sampling",
           "top_p must be in (0, 1], got ", params.top_p);
}

int32_t Sampler::sample(std::span<const float> logits) {
  const int32_t best = argmax(logits);
  AF_CHECK(std::isfinite(logits[static_cast<size_t>(best)]), ErrorCode::kInvalidArgument,
           "sampling", "logits hold no finite maximum (NaN or all -inf)");
  if (params_.temperature == 0.0f || params_.top_k == 1) return best;

  // Candidates sorted by logit (ties by id, so the order is deterministic), then cut.
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  const auto by_logit = [&](int32_t a, int32_t b) {
    const float la = logits[static_cast<size_t>(a)], lb = logits[static_cast<size_t>(b)];
    return la > lb || (la == lb && a < b);
  };
  size_t keep = ids.size();
  if (params_.top_k > 0) keep = std::min(keep, static_cast<size_t>(params_.top_k));
  std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(keep), ids.end(),
                    by_logit);
  ids.resize(keep);

  std::vector<double> probs(keep);
  const double max_logit = logits[static_cast<size_t>(ids[0])];
  double total = 0;
  for (size_t i = 0; i < keep; ++i) {
    probs[i] = std::exp((logits[static_cast<size_t>(ids[i])] - max_logit) / params_.temperature);
    total += probs[i];
  }
  if (params_.top_p < 1.0f) {
    // Smallest prefix whose probability reaches top_p (always at least one token).
    double cumulative = 0;
    size_t cut = keep;
    for (size_t i = 0; i < keep; ++i) {
      cumulative += probs[i] / total;
      if (cumulative >= params_.top_p) {
        cut = i + 1;
        break;
      }
    }
    probs.resize(cut);
    ids.resize(cut);
    total = std::accumulate(probs.begin(), probs.end(), 0.0);
  }
  const double r = std::uniform_real_distribution<double>(0.0, total)(rng_);
  double cumulative = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    cumulative += probs[i];
    if (r < cumulative) return ids[i];
  }
  return ids.back();
}

}  // namespace af::ops
