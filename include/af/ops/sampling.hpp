#pragma once
// Choosing the next token from logits.
//
// The chain, in this order (Sampler::sample runs it; every step is also a free function below so
// that tests and custom chains can compose them):
//   1. penalties over the last `penalty_last_n` ids of the history: repetition penalty (Hugging
//      Face semantics), then presence and frequency penalties (OpenAI semantics), as vLLM orders
//      them;
//   2. logit bias (added to the logit; OpenAI's -100 all but bans a token, -inf bans it);
//   3. temperature 0: greedy, the argmax of these logits (lowest id on ties); nothing below runs;
//   4. temperature (logits / temperature), top-k, top-p, min-p, typical-p: exactly the order of
//      transformers' generate() (GenerationMixin._get_logits_processor in transformers 5.24), and
//      with its semantics, so that the kept set and its probabilities equal transformers' logits
//      processors (tests/fixtures/sampling, recorded by tools/sampling_make_fixtures.py). Because
//      temperature comes first, min-p compares temperature-adjusted probabilities and top-p sums
//      them. Each truncation renormalises over what the previous one kept.
//   5. one draw from the kept candidates.
// Differences worth knowing:
//   - transformers applies a SequenceBias before its repetition penalty; here the bias comes after
//     the penalties (OpenAI/vLLM), so a biased logit is never divided by the repetition penalty.
//   - llama.cpp's default chain is different (penalties, top-k, typical, top-p, min-p, then
//     temperature last), so the same parameters give other distributions there.
//   - Ties: like transformers, top-k keeps every token tied with the k-th largest logit, min-p
//     and typical-p keep ties at their threshold, and top-p keeps a token when the probability
//     of the tokens strictly more likely than it is below top_p (so a tie group is kept or cut
//     as a whole; transformers leaves that case to its sort order). One exception: top_k == 1
//     keeps only the argmax (lowest id on ties), so top-k 1 always equals greedy.
//
// Log-probabilities (SampledToken::logprob and ::top) follow OpenAI and vLLM: the log-softmax of
// the logits after penalties and logit bias but before temperature and truncation, over the whole
// vocabulary. They therefore do not depend on temperature, top-k, top-p, min-p or typical-p.
// ::top never lists a token of probability 0 (a -inf logit: banned or masked).
//
// Randomness: a std::mt19937_64 seeded with `seed` (whose sequence the C++ standard fixes); each
// sampled token takes exactly one 64-bit draw, turned into u in [0, 1) from its top 53 bits, and
// the token is found by inverse CDF over the kept candidates in ascending id order. Nothing here
// uses threads, so results do not depend on the thread count; greedy takes no draw.
#include <cstdint>
#include <random>
#include <span>
#include <utility>
#include <vector>

namespace af::ops {

struct SamplingParams {
  float temperature = 0.0f;         // 0: greedy (argmax after penalties/bias)
  int32_t top_k = 0;                // 0: off
  float top_p = 1.0f;               // 1: off
  float min_p = 0.0f;               // 0: off
  float typical_p = 1.0f;           // 1: off
  float repetition_penalty = 1.0f;  // HF semantics (divide positive logits, multiply negative),
                                    // over the distinct ids of the history
  float presence_penalty = 0.0f;    // OpenAI semantics: logit -= presence * (count > 0) +
  float frequency_penalty = 0.0f;   //                            frequency * count
  int32_t penalty_last_n = 0;       // penalties look at the last n ids of the history; 0: all of it
  std::vector<std::pair<int32_t, float>> logit_bias = {};  // added to the logit (OpenAI: -100 bans)
  int32_t top_logprobs = 0;  // how many alternatives sample() reports (0..20)
  uint64_t seed = 0;
};

inline constexpr int32_t kMaxTopLogprobs = 20;

struct TokenLogprob {
  int32_t id;
  float logprob;
};

struct SampledToken {
  int32_t id;
  float logprob;                  // of the chosen id
  std::vector<TokenLogprob> top;  // top_logprobs best alternatives, most likely first
};

// A token still in the running during truncation, with its temperature-scaled logit.
struct Candidate {
  int32_t id;
  double score;  // logit / temperature
};

// A kept token with its final probability (what sample() draws from).
struct TokenProb {
  int32_t id;
  double prob;
};

class Sampler {
 public:
  // Throws kInvalidArgument on out-of-range params, naming the field.
  explicit Sampler(const SamplingParams& params);

  // history: the ids so far (prompt + generated) that penalties look at. Throws kInvalidArgument
  // for empty/NaN logits or history ids outside the vocabulary (and logit_bias ids likewise), or
  // when penalties and bias leave no token with a finite logit.
  SampledToken sample(std::span<const float> logits, std::span<const int32_t> history = {});

  // The distribution sample() would draw from for these inputs: the kept ids with their
  // probabilities, in ascending id order. With temperature 0, the argmax alone with probability 1.
  // Takes no draw from the generator.
  std::vector<TokenProb> distribution(std::span<const float> logits,
                                      std::span<const int32_t> history = {});

  // Ids that are never sampled nor reported among the top logprobs: their logits become -inf
  // after penalties and bias, before greedy, truncation and the log-softmax. For ids that
  // have no text (holes of the tokenizer's id space, embedding rows past its vocabulary); see
  // runtime::unassigned_ids. Ids outside the logits are ignored. kInvalidArgument for ids < 0.
  void set_masked_ids(std::vector<int32_t> ids);

  const SamplingParams& params() const { return params_; }

 private:
  // Validates the inputs and fills work_ with the penalised, biased logits.
  void prepare(std::span<const float> logits, std::span<const int32_t> history);
  std::vector<Candidate> truncate() const;

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<float> work_;      // [vocab] logits after penalties, bias and the mask
  std::vector<int32_t> masked_;  // set_masked_ids
};

// Index of the largest logit (the first one on ties). Throws kInvalidArgument when empty.
int32_t argmax(std::span<const float> logits);

// ---- The steps of the chain (see the top of this file for their order and semantics). ----

// Applies the repetition penalty (to the distinct ids of `history`) and then the presence and
// frequency penalties (by each id's count in `history`) to `logits` in place. `history` is the
// window the penalties look at; every id must lie in [0, logits.size()).
void apply_penalties(std::span<float> logits, std::span<const int32_t> history,
                     float repetition_penalty, float presence_penalty, float frequency_penalty);

// Adds each bias to its logit; every id must lie in [0, logits.size()).
void apply_logit_bias(std::span<float> logits,
                      std::span<const std::pair<int32_t, float>> logit_bias);

// Every token whose logit is not -inf, with score logit / temperature (temperature > 0), in
// ascending id order.
std::vector<Candidate> scale_by_temperature(std::span<const float> logits, float temperature);

// The same as scale_by_temperature followed by keep_top_k, in one pass over the vocabulary
// without building a candidate for every token (the fast path for large vocabularies).
std::vector<Candidate> top_k_candidates(std::span<const float> logits, float temperature,
                                        int32_t top_k);

// Truncation steps. Each keeps at least one candidate and may reorder them.
void keep_top_k(std::vector<Candidate>& candidates, int32_t top_k);      // top_k >= 1
void keep_top_p(std::vector<Candidate>& candidates, float top_p);        // (0, 1]
void keep_min_p(std::vector<Candidate>& candidates, float min_p);        // [0, 1]
void keep_typical(std::vector<Candidate>& candidates, float typical_p);  // (0, 1]

// softmax of the candidates' scores, in ascending id order.
std::vector<TokenProb> candidate_probabilities(std::vector<Candidate> candidates);

}  // namespace af::ops
