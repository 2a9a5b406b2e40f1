// Whisper greedy generation: the prompt, language detection and the logits processors of
// transformers' WhisperGenerationMixin (short-form path).
#include "af/models/whisper_generate.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <limits>
#include <random>

#include "af/core/error.hpp"
#include "af/io/model_files.hpp"
#include "whisper_beam.hpp"

namespace af::models {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr int64_t kMaxBeams = 64;  // each beam holds its own self-attention cache

int32_t id_key(const nlohmann::json& j, const char* key, int32_t fallback,
               const std::string& origin) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  const nlohmann::json& v = j[key].is_array() && !j[key].empty() ? j[key][0] : j[key];
  AF_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() <= INT32_MAX,
           ErrorCode::kFormat, "whisper", origin, ": \"", key, "\" must be a token id");
  return v.get<int32_t>();
}

std::vector<int32_t> id_list(const nlohmann::json& j, const char* key, const std::string& origin) {
  std::vector<int32_t> ids;
  if (!j.contains(key) || j[key].is_null()) return ids;
  AF_CHECK(j[key].is_array(), ErrorCode::kFormat, "whisper", origin, ": \"", key,
           "\" must be a list of token ids");
  for (const auto& v : j[key]) {
    AF_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() <= INT32_MAX,
             ErrorCode::kFormat, "whisper", origin, ": \"", key, "\" holds a non-id");
    ids.push_back(v.get<int32_t>());
  }
  return ids;
}

std::vector<std::pair<std::string, int32_t>> id_map(const nlohmann::json& j, const char* key,
                                                    const std::string& origin) {
  std::vector<std::pair<std::string, int32_t>> map;
  if (!j.contains(key) || j[key].is_null()) return map;
  AF_CHECK(j[key].is_object(), ErrorCode::kFormat, "whisper", origin, ": \"", key,
           "\" must be an object");
  for (const auto& [name, v] : j[key].items()) {
    AF_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() <= INT32_MAX,
             ErrorCode::kFormat, "whisper", origin, ": \"", key, "\".\"", name,
             "\" must be a token id");
    map.emplace_back(name, v.get<int32_t>());
  }
  return map;
}

// "alignment_heads": [[layer, head], ...] (checked against the model's shape where used).
std::vector<std::pair<int64_t, int64_t>> parse_alignment_heads(const nlohmann::json& j,
                                                               const std::string& origin) {
  std::vector<std::pair<int64_t, int64_t>> heads;
  if (!j.contains("alignment_heads") || j["alignment_heads"].is_null()) return heads;
  const nlohmann::json& list = j["alignment_heads"];
  AF_CHECK(list.is_array() && list.size() <= 4096, ErrorCode::kFormat, "whisper", origin,
           ": \"alignment_heads\" must be a list of [layer, head] pairs");
  for (const auto& pair : list) {
    AF_CHECK(pair.is_array() && pair.size() == 2 && pair[0].is_number_integer() &&
                 pair[1].is_number_integer() && pair[0].get<int64_t>() >= 0 &&
                 pair[1].get<int64_t>() >= 0,
             ErrorCode::kFormat, "whisper", origin,
             ": \"alignment_heads\" entries must be [layer, head] with non-negative integers");
    heads.emplace_back(pair[0].get<int64_t>(), pair[1].get<int64_t>());
  }
  return heads;
}

std::optional<int32_t> lookup(const std::vector<std::pair<std::string, int32_t>>& map,
                              const std::string& name) {
  for (const auto& [key, id] : map) {
    if (key == name) return id;
  }
  return std::nullopt;
}

int32_t language_id(const WhisperGenerationConfig& c, std::string language) {
  std::transform(language.begin(), language.end(), language.begin(),
                 [](unsigned char ch) { return char(std::tolower(ch)); });
  if (auto id = lookup(c.lang_to_id, language)) return *id;
  if (auto id = lookup(c.lang_to_id, "<|" + language + "|>")) return *id;
  std::string known;
  for (const auto& [key, id] : c.lang_to_id) known += " " + key;
  fail(ErrorCode::kInvalidArgument, "whisper", "language \"", language,
       "\" is not in this model's lang_to_id (known:", known.empty() ? " none" : known, ")");
}

size_t argmax(std::span<const float> v) {
  return size_t(std::max_element(v.begin(), v.end()) - v.begin());  // first of equal maxima
}

// WhisperTimeStampLogitsProcessor.
void timestamp_rules(const WhisperGenerationConfig& c, std::span<const int32_t> ids,
                     size_t begin_index, std::span<float> scores) {
  const size_t vocab = scores.size(), ts_begin = size_t(c.timestamp_begin());
  if (ts_begin > vocab) return;
  scores[size_t(c.no_timestamps_token_id)] = kNegInf;
  const std::span<const int32_t> seq = ids.subspan(std::min(begin_index, ids.size()));
  const auto is_ts = [&](int32_t id) { return size_t(id) >= ts_begin; };
  const bool last_ts = !seq.empty() && is_ts(seq.back());
  const bool penultimate_ts = seq.size() < 2 || is_ts(seq[seq.size() - 2]);
  if (last_ts) {
    const size_t from = penultimate_ts ? ts_begin : 0;
    const size_t to = penultimate_ts ? vocab : std::min(vocab, size_t(std::max(0, c.eos_token_id)));
    for (size_t i = from; i < to; ++i) scores[i] = kNegInf;
  }
  size_t ts_last = ts_begin;
  for (auto it = seq.rbegin(); it != seq.rend(); ++it) {
    if (!is_ts(*it)) continue;
    ts_last = (last_ts && !penultimate_ts) ? size_t(*it) : size_t(*it) + 1;
    break;
  }
  for (size_t i = ts_begin; i < std::min(ts_last, vocab); ++i) scores[i] = kNegInf;
  if (ids.size() == begin_index) {
    for (size_t i = 0; i < ts_begin; ++i) scores[i] = kNegInf;
    if (c.max_initial_timestamp_index) {
      const size_t last_allowed = ts_begin + size_t(*c.max_initial_timestamp_index);
      for (size_t i = last_allowed + 1; i < vocab; ++i) scores[i] = kNegInf;
    }
  }
  // Timestamps win when their summed probability beats every single text token (log-softmax
  // in float32 as torch computes it; the shared normaliser cancels in the comparison, so the
  // raw scores are compared after subtracting the max).
  float max_all = kNegInf;
  for (float s : scores) max_all = std::max(max_all, s);
  if (max_all == kNegInf) return;
  double ts_sum = 0.0;
  for (size_t i = ts_begin; i < vocab; ++i) ts_sum += std::exp(double(scores[i] - max_all));
  float max_text = kNegInf;
  for (size_t i = 0; i < ts_begin; ++i) max_text = std::max(max_text, scores[i] - max_all);
  if (ts_sum > 0.0 && std::log(ts_sum) > double(max_text)) {
    for (size_t i = 0; i < ts_begin; ++i) scores[i] = kNegInf;
  }
}

}  // namespace

WhisperGenerationConfig WhisperGenerationConfig::from_json(const nlohmann::json& j,
                                                           const std::string& origin) {
  AF_CHECK(j.is_object(), ErrorCode::kFormat, "whisper", origin, ": not a JSON object");
  WhisperGenerationConfig c;
  c.decoder_start_token_id = id_key(j, "decoder_start_token_id", -1, origin);
  c.eos_token_id = id_key(j, "eos_token_id", -1, origin);
  c.no_timestamps_token_id = id_key(j, "no_timestamps_token_id", -1, origin);
  c.prev_sot_token_id = id_key(j, "prev_sot_token_id", -1, origin);
  AF_CHECK(c.decoder_start_token_id >= 0, ErrorCode::kFormat, "whisper", origin,
           ": \"decoder_start_token_id\" is missing");
  c.suppress_tokens = id_list(j, "suppress_tokens", origin);
  c.begin_suppress_tokens = id_list(j, "begin_suppress_tokens", origin);
  c.lang_to_id = id_map(j, "lang_to_id", origin);
  c.task_to_id = id_map(j, "task_to_id", origin);
  if (j.contains("forced_decoder_ids") && j["forced_decoder_ids"].is_array()) {
    for (const auto& pair : j["forced_decoder_ids"]) {
      AF_CHECK(pair.is_array() && pair.size() == 2 && pair[0].is_number_integer() &&
                   (pair[1].is_null() || pair[1].is_number_integer()),
               ErrorCode::kFormat, "whisper", origin,
               ": \"forced_decoder_ids\" entries must be [position, id or null]");
      c.forced_decoder_ids.emplace_back(pair[0].get<int64_t>(),
                                        pair[1].is_null() ? -1 : pair[1].get<int32_t>());
    }
  }
  if (j.contains("max_initial_timestamp_index") && j["max_initial_timestamp_index"].is_number()) {
    c.max_initial_timestamp_index = j["max_initial_timestamp_index"].get<int64_t>();
  }
  if (j.contains("max_length") && j["max_length"].is_number_integer()) {
    c.max_length = j["max_length"].get<int64_t>();
  }
  c.is_multilingual = j.value("is_multilingual", false);
  c.alignment_heads = parse_alignment_heads(j, origin);
  return c;
}

int32_t WhisperGenerationConfig::prev_sot() const {
  if (prev_sot_token_id >= 0) return prev_sot_token_id;
  return suppress_tokens.size() >= 2 ? suppress_tokens[suppress_tokens.size() - 2] : -1;
}

WhisperGenerationConfig WhisperGenerationConfig::load(const std::string& folder) {
  const std::string path = (std::filesystem::path(folder) / "generation_config.json").string();
  return from_json(io::read_json_file(path), path);
}

void whisper_process_logits(const WhisperGenerationConfig& c, bool timestamps,
                            std::span<const int32_t> ids, size_t begin_index,
                            std::span<float> scores) {
  // transformers applies begin_suppress, then suppress_tokens, then the timestamp rules.
  if (ids.size() == begin_index) {
    for (int32_t id : c.begin_suppress_tokens) {
      if (size_t(id) < scores.size()) scores[size_t(id)] = kNegInf;
    }
  }
  for (int32_t id : c.suppress_tokens) {
    if (size_t(id) < scores.size()) scores[size_t(id)] = kNegInf;
  }
  if (timestamps) timestamp_rules(c, ids, begin_index, scores);
}

std::vector<int32_t> whisper_init_tokens(Whisper& model, WhisperState& state,
                                         const WhisperGenerationConfig& c,
                                         const WhisperGenerateOptions& o, int32_t* language_out) {
  std::vector<int32_t> prompt{c.decoder_start_token_id};
  if (o.task.empty() && o.language.empty()) {
    // Deprecated forced_decoder_ids fill the slots after <|startoftranscript|> (null: detect).
    for (size_t i = 0; i < c.forced_decoder_ids.size(); ++i) {
      AF_CHECK(c.forced_decoder_ids[i].first == int64_t(i) + 1, ErrorCode::kFormat, "whisper",
               "forced_decoder_ids do not follow Whisper's prompt pattern");
      prompt.push_back(c.forced_decoder_ids[i].second);
    }
  }
  const bool lang_undefined = prompt.size() <= 1 || prompt[1] < 0;
  int32_t lang = -1;
  if (!o.language.empty()) {
    lang = language_id(c, o.language);
  } else if (!c.lang_to_id.empty() && lang_undefined) {
    // detect_language: the first step's logits restricted to the language tokens.
    // The step writes self-attention K/V at n_past; rewinding n_past discards it (the causal
    // cache never reads past n_past), instead of copying the whole state (~47 MB for base).
    const int64_t n_past = state.n_past;
    std::vector<float> logits = model.decode(state, std::span(prompt.data(), 1), false);
    state.n_past = n_past;
    std::vector<float> masked(logits.size(), kNegInf);
    for (const auto& [name, id] : c.lang_to_id) {
      if (size_t(id) < logits.size()) masked[size_t(id)] = logits[size_t(id)];
    }
    lang = int32_t(argmax(masked));
  }
  if (lang >= 0) {
    if (prompt.size() > 1) {
      prompt[1] = lang;
    } else {
      prompt.push_back(lang);
    }
  }
  *language_out = lang;
  if (!o.task.empty()) {
    const std::optional<int32_t> task = lookup(c.task_to_id, o.task);
    AF_CHECK(task.has_value(), ErrorCode::kInvalidArgument, "whisper", "task \"", o.task,
             "\" is not in this model's task_to_id (transcribe, translate)");
    prompt.push_back(*task);  // transformers appends; forced ids may already hold one
    for (size_t i = 1; i + 1 < prompt.size(); ++i) {
      for (const auto& [name, id] : c.task_to_id) {
        if (prompt[i] == id) prompt[i] = *task;
      }
    }
  } else if (!o.language.empty() && !c.task_to_id.empty()) {
    bool has_task = false;
    for (int32_t t : prompt) {
      for (const auto& [name, id] : c.task_to_id) has_task = has_task || t == id;
    }
    if (!has_task) prompt.push_back(*lookup(c.task_to_id, "transcribe"));
  }
  if (!o.timestamps && c.no_timestamps_token_id >= 0 && prompt.back() != c.no_timestamps_token_id) {
    prompt.push_back(c.no_timestamps_token_id);
  } else if (o.timestamps && prompt.back() == c.no_timestamps_token_id) {
    prompt.pop_back();
  }
  std::erase_if(prompt, [](int32_t id) { return id < 0; });
  return prompt;
}

namespace {

// log_softmax(scores)[id] in double (transformers: float32 log_softmax of the processed scores).
float token_logprob(std::span<const float> scores, size_t id) {
  const float top = *std::max_element(scores.begin(), scores.end());
  double sum = 0.0;
  for (float s : scores) sum += std::exp(double(s - top));
  return float(double(scores[id] - top) - std::log(sum));
}

// A token drawn from softmax(scores / temperature) (openai-whisper's and CTranslate2's sampling
// with top-k 0: the whole distribution), with a portable uniform draw from the 64-bit engine.
int32_t sample(std::span<const float> scores, double temperature, std::mt19937_64& rng) {
  const float top = *std::max_element(scores.begin(), scores.end());
  std::vector<double> weights(scores.size());
  double sum = 0.0;
  for (size_t i = 0; i < scores.size(); ++i) {
    weights[i] = std::exp(double(scores[i] - top) / temperature);
    sum += weights[i];
  }
  double u = double(rng() >> 11) * 0x1.0p-53 * sum;
  size_t last = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    if (weights[i] == 0.0) continue;
    last = i;
    if (u < weights[i]) return int32_t(i);
    u -= weights[i];
  }
  return int32_t(last);  // rounding left u past the end: the last possible token
}

double softmax_at(std::span<const float> logits, size_t id) {
  const float top = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float s : logits) sum += std::exp(double(s - top));
  return std::exp(double(logits[id] - top)) / sum;
}

// The prompt's decode: the logits after its last id, and with no_speech_position the no-speech
// probability there (two calls, so those logits come without the whole prompt's [n, vocab]).
std::vector<float> decode_prompt(Whisper& model, WhisperState& state, std::span<const int32_t> ids,
                                 const WhisperGenerationConfig& c,
                                 std::optional<size_t> no_speech_position, WhisperWindow& out) {
  AF_CHECK(!ids.empty(), ErrorCode::kInvalidArgument, "whisper", "empty decoder prompt");
  if (!no_speech_position) return model.decode(state, ids, false);
  const size_t at = *no_speech_position;
  AF_CHECK(at < ids.size() && c.no_timestamps_token_id > 0, ErrorCode::kInvalidArgument, "whisper",
           "no-speech position ", at, " outside the prompt of ", ids.size());
  std::vector<float> logits = model.decode(state, ids.first(at + 1), false);
  out.no_speech_prob = softmax_at(logits, size_t(c.no_timestamps_token_id - 1));
  if (at + 1 < ids.size()) logits = model.decode(state, ids.subspan(at + 1), false);
  return logits;
}

// One greedy or sampling step: the rules on `logits`, then the chosen token appended to ids and
// out. Returns whether the window goes on (no eos, under max_length).
bool next_token(const WhisperGenerationConfig& c, bool timestamps, size_t begin_index,
                int64_t max_length, double temperature, std::mt19937_64& rng,
                std::span<float> logits, std::vector<int32_t>& ids, WhisperWindow& out) {
  whisper_process_logits(c, timestamps, ids, begin_index, logits);
  const int32_t next =
      temperature > 0.0 ? sample(logits, temperature, rng) : int32_t(argmax(logits));
  ids.push_back(next);
  out.tokens.push_back(next);
  out.token_logprobs.push_back(token_logprob(logits, size_t(next)));
  return next != c.eos_token_id && int64_t(ids.size()) < max_length;
}

}  // namespace

WhisperWindow whisper_decode_window(Whisper& model, WhisperState& state,
                                    std::span<const int32_t> input,
                                    const WhisperGenerationConfig& c, bool timestamps,
                                    int64_t max_length, std::optional<size_t> no_speech_position,
                                    const WhisperSearch& search) {
  AF_CHECK(search.beam_size >= 1 && search.beam_size <= kMaxBeams, ErrorCode::kInvalidArgument,
           "whisper", "beam_size ", search.beam_size, " outside 1..", kMaxBeams);
  WhisperWindow out;
  std::vector<int32_t> ids(input.begin(), input.end());
  std::vector<float> logits = decode_prompt(model, state, ids, c, no_speech_position, out);
  AF_CHECK(std::isfinite(search.temperature) && search.temperature >= 0.0,
           ErrorCode::kInvalidArgument, "whisper", "temperature ", search.temperature,
           " must be finite and >= 0");
  if (search.beam_size > 1 && search.temperature == 0.0) {
    WhisperWindow beam = whisper_beam_search(model, state, std::move(ids), std::move(logits), c,
                                             timestamps, max_length, search);
    beam.no_speech_prob = out.no_speech_prob;
    return beam;
  }
  std::mt19937_64 rng(search.seed);
  if (int64_t(ids.size()) >= max_length) return out;
  while (next_token(c, timestamps, input.size(), max_length, search.temperature, rng, logits, ids,
                    out)) {
    logits = model.decode(state, std::span(&ids.back(), 1), false);
  }
  return out;
}

std::vector<WhisperWindow> whisper_decode_windows(Whisper& model,
                                                  std::span<WhisperState* const> states,
                                                  std::span<const int32_t> input,
                                                  const WhisperGenerationConfig& c, bool timestamps,
                                                  int64_t max_length,
                                                  std::optional<size_t> no_speech_position) {
  const size_t n = states.size();
  std::vector<WhisperWindow> out(n);
  std::vector<std::vector<int32_t>> ids(n, std::vector<int32_t>(input.begin(), input.end()));
  std::vector<std::vector<float>> logits(n);
  for (size_t i = 0; i < n; ++i) {
    logits[i] = decode_prompt(model, *states[i], ids[i], c, no_speech_position, out[i]);
  }
  std::mt19937_64 rng(0);      // unused: greedy
  std::vector<size_t> active;  // windows still decoding, in order
  for (size_t i = 0; i < n; ++i) {
    if (int64_t(ids[i].size()) < max_length) active.push_back(i);
  }
  std::vector<WhisperState*> step_states;
  std::vector<int32_t> step_ids;
  while (!active.empty()) {
    std::erase_if(active, [&](size_t i) {
      return !next_token(c, timestamps, input.size(), max_length, 0.0, rng, logits[i], ids[i],
                         out[i]);
    });
    step_states.clear();
    step_ids.clear();
    for (size_t i : active) {
      step_states.push_back(states[i]);
      step_ids.push_back(ids[i].back());
    }
    if (active.empty()) break;
    const std::vector<float> step = model.decode_step(step_states, step_ids);
    const size_t vocab = step.size() / active.size();
    for (size_t j = 0; j < active.size(); ++j) {
      logits[active[j]].assign(step.begin() + std::ptrdiff_t(j * vocab),
                               step.begin() + std::ptrdiff_t((j + 1) * vocab));
    }
  }
  return out;
}

WhisperGeneration whisper_generate(Whisper& model, std::span<const float> mel,
                                   const WhisperGenerationConfig& c,
                                   const WhisperGenerateOptions& o) {
  AF_CHECK(!o.timestamps || c.no_timestamps_token_id >= 0, ErrorCode::kUnsupported, "whisper",
           "timestamps need no_timestamps_token_id in generation_config.json");
  WhisperState state = model.start(model.encode(mel));
  WhisperGeneration out;
  out.prompt = whisper_init_tokens(model, state, c, o, &out.language_id);
  const int64_t limit =
      std::min(model.config().max_target_positions,
               o.max_new_tokens > 0 ? int64_t(out.prompt.size()) + o.max_new_tokens : c.max_length);
  out.tokens = whisper_decode_window(model, state, out.prompt, c, o.timestamps, limit, std::nullopt,
                                     o.search)
                   .tokens;
  return out;
}

}  // namespace af::models
