// Whisper beam search, in transformers' and in CTranslate2's flavour (see WhisperSearch). Each
// beam owns the self-attention KV rows of its sequence; the cross-attention K/V stay in the one
// WhisperState, whose self caches are swapped with the beam's for its decode step (no copy of the
// cross K/V per beam).
#include "whisper_beam.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "af/core/error.hpp"

namespace af::models {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kFinishedPenalty = -1.0e9f;  // transformers' mask for beams that hit a stop

struct Beam {
  std::vector<int32_t> ids;        // prompt + generated
  std::vector<float> logprobs;     // per generated token
  float score = 0.0f;              // accumulated log-probability (float32, as torch and CT2)
  std::vector<float> step_logits;  // [vocab] logits for the next token
  size_t cache = 0;                // index of its KV rows in the current cache pool
};

struct Candidate {
  float score = 0.0f;  // beam score + token log-probability
  float logprob = 0.0f;
  size_t beam = 0;
  int32_t token = 0;
};

struct Finished {
  float score = 0.0f;  // length-normalised
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
};

// log_softmax in place (max-shifted, summed in double, rounded once to float32).
void log_softmax(std::span<float> v) {
  const float top = *std::max_element(v.begin(), v.end());
  double sum = 0.0;
  for (float x : v) sum += std::exp(double(x - top));
  const float log_sum = float(std::log(sum));
  for (float& x : v) x = (x - top) - log_sum;
}

// The self-attention caches of the beams: two pools of beam_size sets, rows copied from the
// parents' set into the other pool as beams are reordered, then the pools swap.
class CachePool {
 public:
  CachePool(WhisperState& state, size_t beams, int64_t d_model)
      : d_model_(d_model), pools_{std::vector<Set>(beams), std::vector<Set>(beams)} {
    pools_[0][0] = {std::move(state.self_k), std::move(state.self_v)};
    for (auto& pool : pools_) {
      for (Set& set : pool) {
        if (!set.k.empty()) continue;
        set = Set{pools_[0][0].k, pools_[0][0].v};  // same shapes; contents overwritten
      }
    }
  }
  // Copies `rows` rows of set `from` (current pool) into set `to` of the next pool.
  void copy(size_t from, size_t to, int64_t rows) {
    const size_t n = size_t(rows * d_model_);
    Set& src = pools_[current_][from];
    Set& dst = pools_[1 - current_][to];
    for (size_t l = 0; l < src.k.size(); ++l) {
      std::copy_n(src.k[l].begin(), n, dst.k[l].begin());
      std::copy_n(src.v[l].begin(), n, dst.v[l].begin());
    }
  }
  void flip() { current_ = 1 - current_; }
  // Decodes `token` after the beam's `n_past` cached rows of set `set`.
  std::vector<float> decode(Whisper& model, WhisperState& state, size_t set, int64_t n_past,
                            int32_t token) {
    Set& s = pools_[current_][set];
    std::swap(state.self_k, s.k);
    std::swap(state.self_v, s.v);
    state.n_past = n_past;
    std::vector<float> logits;
    try {
      logits = model.decode(state, std::span(&token, 1), false);
    } catch (...) {
      std::swap(state.self_k, s.k);
      std::swap(state.self_v, s.v);
      throw;
    }
    std::swap(state.self_k, s.k);
    std::swap(state.self_v, s.v);
    return logits;
  }
  void give_back(WhisperState& state, size_t set) {
    state.self_k = std::move(pools_[current_][set].k);
    state.self_v = std::move(pools_[current_][set].v);
  }

 private:
  struct Set {
    std::vector<std::vector<float>> k, v;  // [layer][max_target_positions, d_model]
  };
  int64_t d_model_;
  std::vector<Set> pools_[2];
  int current_ = 0;
};

// The step's log-probabilities of one beam, rules applied in the style's order.
std::vector<float> step_logprobs(const Beam& beam, const WhisperGenerationConfig& c,
                                 bool timestamps, size_t begin, bool ctranslate2) {
  std::vector<float> scores = beam.step_logits;
  if (ctranslate2) {
    whisper_process_logits(c, timestamps, beam.ids, begin, scores);
    log_softmax(scores);
  } else {
    log_softmax(scores);
    whisper_process_logits(c, timestamps, beam.ids, begin, scores);
  }
  return scores;
}

// The best `k` continuations over all beams, best first; equal scores keep the flat order
// (beam, then token), as a top-k over the flattened [beams * vocab] does.
std::vector<Candidate> top_candidates(const std::vector<Beam>& beams,
                                      const WhisperGenerationConfig& c, bool timestamps,
                                      size_t begin, bool ctranslate2, size_t k) {
  std::vector<Candidate> all;
  for (size_t b = 0; b < beams.size(); ++b) {
    const std::vector<float> lp = step_logprobs(beams[b], c, timestamps, begin, ctranslate2);
    std::vector<Candidate> mine;
    mine.reserve(lp.size());
    for (size_t t = 0; t < lp.size(); ++t) {
      if (lp[t] == kNegInf) continue;
      mine.push_back({beams[b].score + lp[t], lp[t], b, int32_t(t)});
    }
    const size_t keep = std::min(k, mine.size());
    std::partial_sort(mine.begin(), mine.begin() + std::ptrdiff_t(keep), mine.end(),
                      [](const Candidate& x, const Candidate& y) {
                        return x.score > y.score || (x.score == y.score && x.token < y.token);
                      });
    all.insert(all.end(), mine.begin(), mine.begin() + std::ptrdiff_t(keep));
  }
  std::stable_sort(all.begin(), all.end(),
                   [](const Candidate& x, const Candidate& y) { return x.score > y.score; });
  if (all.size() > k) all.resize(k);
  return all;
}

// The searcher's shared state: beams, their caches and the decode of a new beam set.
class Search {
 public:
  Search(Whisper& model, WhisperState& state, std::vector<int32_t> ids, std::vector<float> logits,
         const WhisperGenerationConfig& c, bool timestamps, int64_t max_length,
         const WhisperSearch& s)
      : model_(model),
        state_(state),
        c_(c),
        timestamps_(timestamps),
        max_length_(max_length),
        s_(s),
        begin_(ids.size()),
        pool_(state, size_t(s.beam_size), model.config().d_model) {
    beams_.push_back({std::move(ids), {}, 0.0f, std::move(logits), 0});
  }
  ~Search() { pool_.give_back(state_, beams_.empty() ? 0 : beams_[0].cache); }

  WhisperWindow transformers();
  WhisperWindow ctranslate2();

 private:
  std::vector<Candidate> candidates() {
    return top_candidates(beams_, c_, timestamps_, begin_, s_.ctranslate2,
                          2 * size_t(s_.beam_size));
  }
  // The generated part of `parent` followed by the candidate's token.
  Finished finish(const Candidate& cand, float score, bool keep_token) const {
    const Beam& parent = beams_[cand.beam];
    Finished f{
        score, {parent.ids.begin() + std::ptrdiff_t(begin_), parent.ids.end()}, parent.logprobs};
    if (keep_token) f.tokens.push_back(cand.token);
    f.logprobs.push_back(cand.logprob);
    return f;
  }
  // The next beams from `chosen` candidates: KV rows copied from their parents, then one decode
  // step each.
  void advance(const std::vector<Candidate>& chosen) {
    const int64_t rows = int64_t(beams_[0].ids.size());
    std::vector<Beam> next;
    for (size_t i = 0; i < chosen.size(); ++i) {
      const Beam& parent = beams_[chosen[i].beam];
      pool_.copy(parent.cache, i, rows);
      Beam b{parent.ids, parent.logprobs, chosen[i].score, {}, i};
      b.ids.push_back(chosen[i].token);
      b.logprobs.push_back(chosen[i].logprob);
      next.push_back(std::move(b));
    }
    pool_.flip();
    for (Beam& b : next) b.step_logits = pool_.decode(model_, state_, b.cache, rows, b.ids.back());
    beams_ = std::move(next);
  }
  double length_norm(size_t length) const { return std::pow(double(length), s_.length_penalty); }
  static WhisperWindow result(Finished best) {
    WhisperWindow w;
    w.tokens = std::move(best.tokens);
    w.token_logprobs = std::move(best.logprobs);
    return w;
  }

  Whisper& model_;
  WhisperState& state_;
  const WhisperGenerationConfig& c_;
  const bool timestamps_;
  const int64_t max_length_;
  const WhisperSearch& s_;
  const size_t begin_;  // prompt length
  CachePool pool_;
  std::vector<Beam> beams_;
};

// transformers' _beam_search (early_stopping=False): 2 * num_beams candidates a step; those among
// the first num_beams that hit eos or max_length join the finished set (best num_beams kept,
// scored by generated length with the last token); the best num_beams others run on; it stops
// when no running beam can beat the worst of a full finished set, or every candidate stopped.
WhisperWindow Search::transformers() {
  const size_t n = size_t(s_.beam_size);
  std::vector<Finished> finished;
  bool may_improve = true;
  for (;;) {
    std::vector<Candidate> cands = candidates();
    AF_CHECK(!cands.empty(), ErrorCode::kInternal, "whisper", "beam search: no candidate token");
    const int64_t cur_len = int64_t(beams_[0].ids.size());
    const auto hits = [&](const Candidate& x) {
      return x.token == c_.eos_token_id || cur_len + 1 >= max_length_;
    };
    if (may_improve) {
      const double norm = length_norm(size_t(cur_len + 1) - begin_);
      for (size_t k = 0; k < std::min(n, cands.size()); ++k) {
        if (hits(cands[k]))
          finished.push_back(finish(cands[k], float(cands[k].score / norm), true));
      }
      std::stable_sort(finished.begin(), finished.end(),
                       [](const Finished& x, const Finished& y) { return x.score > y.score; });
      if (finished.size() > n) finished.resize(n);
    }
    bool all_hit = true;
    for (Candidate& x : cands) {
      if (hits(x)) {
        x.score += kFinishedPenalty;
      } else {
        all_hit = false;
      }
    }
    if (all_hit) break;
    std::stable_sort(cands.begin(), cands.end(),
                     [](const Candidate& x, const Candidate& y) { return x.score > y.score; });
    cands.resize(std::min(n, cands.size()));
    if (finished.size() == n) {
      const double best = cands[0].score / length_norm(size_t(cur_len + 1) - begin_);
      may_improve = may_improve && best > double(finished.back().score);
    }
    if (!may_improve) break;
    advance(cands);
  }
  AF_CHECK(!finished.empty(), ErrorCode::kInternal, "whisper", "beam search finished nothing");
  return result(std::move(finished.front()));
}

// CTranslate2's BeamSearch::search (openai-whisper's BeamSearchDecoder): 2 * beam_size
// candidates; each of the first beam_size that ends (eos, or the last step) is registered and
// its slot taken by the next candidate that is not eos; done when round(beam_size * patience)
// hypotheses are registered or at the last step; the best by score / length (eos not counted).
WhisperWindow Search::ctranslate2() {
  const size_t n = size_t(s_.beam_size);
  const size_t wanted = std::max<size_t>(1, size_t(std::lround(double(n) * s_.patience)));
  std::vector<Finished> hyps;  // raw scores until the end
  for (;;) {
    const std::vector<Candidate> cands = candidates();
    AF_CHECK(!cands.empty(), ErrorCode::kInternal, "whisper", "beam search: no candidate token");
    const bool last = int64_t(beams_[0].ids.size()) + 1 >= max_length_;
    std::vector<Candidate> next;
    size_t secondary = n;
    for (size_t k = 0; k < std::min(n, cands.size()); ++k) {
      size_t pick = k;
      const bool eos = cands[k].token == c_.eos_token_id;
      if (eos || last) {
        hyps.push_back(finish(cands[k], cands[k].score, !eos));
        for (size_t j = secondary; j < cands.size(); ++j) {
          if (cands[j].token == c_.eos_token_id) continue;
          pick = j;
          secondary = j + 1;
          break;
        }
      }
      next.push_back(cands[pick]);
    }
    if (last || hyps.size() >= wanted) break;
    advance(next);
  }
  for (Finished& h : hyps) h.score = float(h.score / length_norm(h.tokens.size()));
  const auto best =
      std::max_element(hyps.begin(), hyps.end(),
                       [](const Finished& x, const Finished& y) { return x.score < y.score; });
  return result(std::move(*best));
}

}  // namespace

WhisperWindow whisper_beam_search(Whisper& model, WhisperState& state, std::vector<int32_t> ids,
                                  std::vector<float> logits, const WhisperGenerationConfig& c,
                                  bool timestamps, int64_t max_length,
                                  const WhisperSearch& search) {
  AF_CHECK(search.patience > 0.0 && search.patience <= 64.0, ErrorCode::kInvalidArgument, "whisper",
           "patience ", search.patience, " outside (0, 64]");
  AF_CHECK(std::isfinite(search.length_penalty), ErrorCode::kInvalidArgument, "whisper",
           "length_penalty must be finite");
  Search s(model, state, std::move(ids), std::move(logits), c, timestamps, max_length, search);
  return search.ctranslate2 ? s.ctranslate2() : s.transformers();
}

}  // namespace af::models
