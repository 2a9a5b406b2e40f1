#pragma once
// Decoding for Whisper as transformers' WhisperForConditionalGeneration.generate does it for one
// 30 s window (greedy, beam search or sampling: WhisperSearch): the prompt <|startoftranscript|>
// [language] [task] [<|notimestamps|>] (language detected from the first decoder step when none is
// given on a multilingual model), suppress_tokens always, begin_suppress_tokens on the first
// generated token, and with timestamps the timestamp logits rules (pairs, monotonic,
// max_initial_timestamp_index, and timestamps forced when their total probability beats every text
// token). Ends at eos or the length limit.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "af/models/whisper.hpp"

namespace af::models {

// generation_config.json's keys for Whisper (missing ones keep these defaults).
struct WhisperGenerationConfig {
  int32_t decoder_start_token_id = -1;  // <|startoftranscript|>
  int32_t eos_token_id = -1;            // <|endoftext|>
  int32_t no_timestamps_token_id = -1;  // <|notimestamps|>; timestamps start right after it
  // <|startofprev|> (before prompt / previous-window tokens); -1: suppress_tokens[-2] when there
  // are two or more, as transformers falls back to.
  int32_t prev_sot_token_id = -1;
  std::vector<int32_t> suppress_tokens, begin_suppress_tokens;
  std::vector<std::pair<std::string, int32_t>> lang_to_id;  // "<|en|>" -> id
  std::vector<std::pair<std::string, int32_t>> task_to_id;  // "transcribe" -> id
  // Older configs: (position, id or -1 for null) pairs after <|startoftranscript|>.
  std::vector<std::pair<int64_t, int32_t>> forced_decoder_ids;
  std::optional<int64_t> max_initial_timestamp_index;
  int64_t max_length = 448;
  bool is_multilingual = false;
  // (decoder layer, head) pairs whose cross-attention follows the audio in time (word
  // timestamps; OpenAI's per-model lists, as transformers and CTranslate2 store them).
  std::vector<std::pair<int64_t, int64_t>> alignment_heads;

  // Errors name `origin` and the key.
  static WhisperGenerationConfig from_json(const nlohmann::json& json, const std::string& origin);
  // From an HF folder's generation_config.json.
  static WhisperGenerationConfig load(const std::string& folder);
  int32_t timestamp_begin() const { return no_timestamps_token_id + 1; }
  int32_t prev_sot() const;  // prev_sot_token_id or its fallback; -1 when there is none
};

// How a window's tokens are searched. beam_size 1 is greedy (both styles agree); above 1, beam
// search as transformers' generate(num_beams) or, with ctranslate2, as CTranslate2 (faster-whisper,
// openai-whisper) does it. They differ: transformers applies the logits rules to log_softmax of
// the logits (no renormalisation), keeps the best num_beams finished hypotheses scored by
// length with eos and stops by its early-stopping heuristic; CTranslate2 renormalises after the
// rules, collects round(beam_size * patience) finished hypotheses scored by length without eos
// and replaces a finished beam with the next non-eos candidate.
struct WhisperSearch {
  int64_t beam_size = 1;
  double patience = 1.0;        // CTranslate2 only (transformers has none)
  double length_penalty = 1.0;  // finished score: sum of log-probabilities / length^penalty
  bool ctranslate2 = false;
  // Above 0: one sample from softmax(processed logits / temperature) per step instead of the
  // search (openai-whisper's and faster-whisper's fallback), drawn with std::mt19937_64(seed).
  double temperature = 0.0;
  uint64_t seed = 0;
};

struct WhisperGenerateOptions {
  // "" detects it (multilingual models); a code ("en"), or a token ("<|en|>") in lang_to_id.
  std::string language;
  std::string task;  // "", "transcribe" or "translate"
  bool timestamps = false;
  int64_t max_new_tokens = 0;  // 0: up to max_length (and max_target_positions) in total
  WhisperSearch search;
};

struct WhisperGeneration {
  std::vector<int32_t> prompt;  // the decoder prompt it started from
  std::vector<int32_t> tokens;  // generated ids (what generate() returns), eos included if reached
  int32_t language_id = -1;     // the language token used (given or detected), -1 if none
};

// mel: [num_mel_bins, n_frames()] of one 30 s window.
WhisperGeneration whisper_generate(Whisper& model, std::span<const float> mel,
                                   const WhisperGenerationConfig& config,
                                   const WhisperGenerateOptions& options);

// The decoder prompt of a window (transformers' init_tokens): <|startoftranscript|>, language
// (given, from forced_decoder_ids, or detected with one decoder step on `state`, which is rewound
// to its n_past afterwards, so no copy of its caches is made), task and <|notimestamps|> when no
// timestamps. *language_id gets the language token or -1.
std::vector<int32_t> whisper_init_tokens(Whisper& model, WhisperState& state,
                                         const WhisperGenerationConfig& config,
                                         const WhisperGenerateOptions& options,
                                         int32_t* language_id);

struct WhisperWindow {
  std::vector<int32_t> tokens;        // generated ids, eos included when reached
  std::vector<float> token_logprobs;  // log_softmax of the processed scores at each token
  double no_speech_prob = 0.0;        // set when asked (no_speech_position)
};

// Greedy decoding or beam search (`search`) after `input` (previous tokens + init tokens; the
// rules start at its end) in a fresh `state`, up to `max_length` ids in total. With
// no_speech_position, no_speech_prob is the softmax of the raw logits at that input position, at
// token no_timestamps_token_id - 1 (transformers' WhisperNoSpeechDetection). Beam search uses
// the state's self-attention caches as its first beam's (their contents are not kept).
WhisperWindow whisper_decode_window(Whisper& model, WhisperState& state,
                                    std::span<const int32_t> input,
                                    const WhisperGenerationConfig& config, bool timestamps,
                                    int64_t max_length,
                                    std::optional<size_t> no_speech_position = std::nullopt,
                                    const WhisperSearch& search = {});

// Greedy decoding of several windows side by side, each from the same `input` in its own fresh
// state (distinct): what whisper_decode_window gives each (greedy), the same tokens and scores,
// with every step of the windows still going run as one Whisper::decode_step, so the decoder's
// weights are read once per step for all of them.
std::vector<WhisperWindow> whisper_decode_windows(
    Whisper& model, std::span<WhisperState* const> states, std::span<const int32_t> input,
    const WhisperGenerationConfig& config, bool timestamps, int64_t max_length,
    std::optional<size_t> no_speech_position = std::nullopt);
// One step's logits rules (exposed for tests): `scores` [vocab] of the next token after `ids`
// (prompt + generated so far), of which the first `begin_index` are the prompt.
void whisper_process_logits(const WhisperGenerationConfig& config, bool timestamps,
                            std::span<const int32_t> ids, size_t begin_index,
                            std::span<float> scores);

}  // namespace af::models
