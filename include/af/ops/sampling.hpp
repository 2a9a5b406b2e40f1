#pragma once
// Choosing the next token from logits: greedy, or temperature + top-k + top-p sampling with a
// seeded generator (single-threaded, so results never depend on the thread count).
#include <cstdint>
#include <random>
#include <span>

namespace af::ops {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy (argmax)
  int32_t top_k = 0;         // 0: no limit
  float top_p = 1.0f;        // 1: no nucleus cut
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // Throws kInvalidArgument for empty or non-finite logits (all -inf, NaN).
  int32_t sample(std::span<const float> logits);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
};

// Index of the largest logit (the first one on ties).
int32_t argmax(std::span<const float> logits);

}  // namespace af::ops
