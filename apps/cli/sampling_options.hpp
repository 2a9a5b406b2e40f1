#pragma once
// The sampling flags `run` and `chat` share, with llama.cpp's defaults.
#include <algorithm>
#include <cstdint>
#include <random>

#include <CLI/CLI.hpp>

#include "af/ops/sampling.hpp"
#include "cli_common.hpp"

namespace af::cli {

struct SamplingOptions {
  float temp = 0.8f, top_p = 0.95f, min_p = 0.05f, typical_p = 1.0f;
  int top_k = 40, repeat_last_n = 64;
  float repeat_penalty = 1.0f, presence_penalty = 0.0f, frequency_penalty = 0.0f;
  int64_t seed = -1;
};

inline void add_sampling_options(CLI::App& sub, SamplingOptions& o) {
  sub.add_option("--temp", o.temp, "temperature (0: greedy)");
  sub.add_option("--top-k", o.top_k, "keep the k most likely tokens (0: all)");
  sub.add_option("--top-p", o.top_p, "nucleus sampling threshold (1: off)");
  sub.add_option("--min-p", o.min_p, "drop tokens below min-p x the top probability (0: off)");
  sub.add_option("--typical-p", o.typical_p, "locally typical sampling (1: off)");
  sub.add_option("--repeat-penalty", o.repeat_penalty, "repetition penalty (1: off)");
  sub.add_option("--repeat-last-n", o.repeat_last_n, "ids the penalties look at (0 or -1: all)");
  sub.add_option("--presence-penalty", o.presence_penalty, "OpenAI presence penalty");
  sub.add_option("--frequency-penalty", o.frequency_penalty, "OpenAI frequency penalty");
  sub.add_option("-s,--seed", o.seed, "random seed (-1: random)");
}

// The ranges SamplingParams accepts, checked before a model loads and named as typed.
inline void check_sampling_options(const SamplingOptions& o) {
  require_flag(o.temp >= 0, "--temp", "must be >= 0 (0: greedy), got " + std::to_string(o.temp));
  require_flag(o.top_k >= 0, "--top-k", "must be >= 0 (0: all), got " + std::to_string(o.top_k));
  require_flag(o.top_p > 0 && o.top_p <= 1, "--top-p",
               "must be in (0, 1] (1: off), got " + std::to_string(o.top_p));
  require_flag(o.min_p >= 0 && o.min_p <= 1, "--min-p",
               "must be in [0, 1] (0: off), got " + std::to_string(o.min_p));
  require_flag(o.typical_p > 0 && o.typical_p <= 1, "--typical-p",
               "must be in (0, 1] (1: off), got " + std::to_string(o.typical_p));
  require_flag(o.repeat_penalty > 0, "--repeat-penalty",
               "must be > 0 (1: off), got " + std::to_string(o.repeat_penalty));
  require_flag(o.repeat_last_n >= -1, "--repeat-last-n",
               "must be >= -1 (0 or -1: all), got " + std::to_string(o.repeat_last_n));
}

inline ops::SamplingParams make_sampling_params(const SamplingOptions& o) {
  ops::SamplingParams p;
  p.temperature = o.temp;
  p.top_k = o.top_k;
  p.top_p = o.top_p;
  p.min_p = o.min_p;
  p.typical_p = o.typical_p;
  p.repetition_penalty = o.repeat_penalty;
  p.presence_penalty = o.presence_penalty;
  p.frequency_penalty = o.frequency_penalty;
  p.penalty_last_n = std::max(o.repeat_last_n, 0);  // llama.cpp's -1 (the context): all
  p.seed = o.seed >= 0 ? static_cast<uint64_t>(o.seed) : std::random_device{}();
  return p;
}

}  // namespace af::cli
