#pragma once
// Whisper transcription as a library call: audio (a file, encoded bytes or 16 kHz samples) in,
// segments with times, text, tokens and scores out. Decoding follows transformers'
// WhisperForConditionalGeneration.generate (greedy or beams, temperature fallback; or, with
// WhisperFeatures::kFasterWhisper, faster-whisper's transcribe loop): inputs up to 30 s are one
// padded window; longer ones (or any input with timestamps) go through its sequential long-form
// loop: 30 s windows of log-mel frames, each window's tokens split into segments at timestamp
// pairs, the next window starting at the last closed timestamp (or after the whole window when
// there is none or the output ends on a single timestamp), segment times offset by the window's
// start, optional no-speech skipping (no_speech_threshold with logprob_threshold) and the
// previous windows' tokens as the prompt when condition_on_prev_tokens is set.
//
// Long inputs are streamed: the audio is decoded twice block by block (first for the log-mel
// maximum the features are scaled by, then window by window), so memory does not grow with the
// duration (AudioLimits::max_seconds still bounds it).
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "af/modalities/audio.hpp"
#include "af/modalities/log_mel.hpp"
#include "af/models/whisper.hpp"
#include "af/models/whisper_generate.hpp"

namespace af::tok {
class Tokenizer;
}

namespace af::models {

// How each 30 s window's log-mel input is made.
enum class WhisperFeatures {
  // transformers: an input up to 30 s is padded with silent samples to 30 s (one window, its
  // log-mel of silence past the audio); longer ones are cut into windows of the whole input's
  // log-mel, the last padded with zeros.
  kTransformers,
  // openai-whisper / faster-whisper (CTranslate2): the log-mel of the audio plus one hop of zero
  // samples, its frames past the audio dropped, every window (short inputs too) cut from it and
  // padded with zeros in the log-mel domain; timestamps are not forced on long inputs, a window
  // without a closed timestamp pair ends at its frame count, and segments with no text or no
  // duration are dropped, and beam search is CTranslate2's (WhisperSearch::ctranslate2).
  // Whisper hears zeros and silence differently, so near-ties (commas, the last timestamp) fall
  // otherwise: this gives faster-whisper's transcripts.
  kFasterWhisper,
};

struct WhisperTranscribeOptions {
  WhisperFeatures features = WhisperFeatures::kTransformers;
  // "" detects it on the first window (multilingual models); a code ("en") or "<|en|>".
  std::string language;
  std::string task;         // "", "transcribe" or "translate"
  bool timestamps = false;  // forced on for inputs over 30 s (long-form needs them)
  // Text before the audio (OpenAI's `prompt`): encoded as " " + trimmed text after
  // <|startofprev|> (transformers' get_prompt_ids); needs the tokenizer. prompt_ids, when not
  // empty, gives those ids directly instead (<|startofprev|> first).
  std::string initial_prompt;
  std::vector<int32_t> prompt_ids;
  // Temperature fallback: each window is decoded at temperatures[0] (0: `search`, greedy or
  // beams; above 0: the best of best_of samples), and again at the next temperature while the
  // result's compression ratio is above compression_ratio_threshold or its average
  // log-probability below logprob_threshold (not when no_speech_threshold calls it silence).
  // openai-whisper / faster-whisper use {0, 0.2, 0.4, 0.6, 0.8, 1}, 2.4, -1 and 0.6. Samples
  // draw from std::mt19937_64 seeded from `seed` and the window.
  std::vector<double> temperatures{0.0};
  int64_t best_of = 1;
  std::optional<double> compression_ratio_threshold;
  uint64_t seed = 0;
  WhisperSearch search;
  // The previous windows' tokens (the last max_target_positions / 2 - 1) go before each
  // window's prompt, after <|startofprev|>.
  bool condition_on_prev_tokens = false;
  // A window is skipped as silence when its no-speech probability is above no_speech_threshold
  // and its average log-probability below logprob_threshold (both needed, as transformers;
  // kFasterWhisper skips on no_speech_threshold alone unless logprob_threshold is beaten).
  std::optional<double> no_speech_threshold, logprob_threshold;
  int64_t max_new_tokens = 0;  // per window; 0: up to generation_config's max_length
  // kFasterWhisper without timestamps steps fixed 30 s windows; with no prompt, no
  // condition_on_prev_tokens, beam_size 1 and temperatures[0] 0 they do not depend on each
  // other, and up to this many are decoded side by side (their first attempts; each step reads
  // the decoder's weights once for all), with the same results as one at a time. Fewer when
  // their encoder outputs and decoder states would pass 256 MiB (about 51 MB a window for
  // base). 1: one window at a time.
  int64_t batch_windows = 4;
  // Per-word times and probabilities as faster-whisper's word_timestamps=True (openai-whisper's
  // algorithm): each window's text tokens are decoded once more after <|startoftranscript|>
  // [language] [task] <|notimestamps|>, the cross-attention of generation_config's
  // alignment_heads (softmax over the window's frames, normalised over the tokens, median filter
  // of width 7, mean over the heads) is aligned to the tokens by DTW, tokens are grouped into
  // words (at spaces and punctuation; at whole characters for zh, ja, th, lo, my, yue) and
  // punctuation merged into its neighbours (prepend_punctuations / append_punctuations).
  // Long words at pauses are clamped and segment times move to their words, and the next
  // window starts at the last word's end. Needs tokenizer.json and alignment_heads.
  bool word_timestamps = false;
  std::string prepend_punctuations = "\"'\u201c\u00bf([{-";
  std::string append_punctuations = "\"'.\u3002,\uff0c!\uff01?\uff1f:\uff1a\u201d)]}\u3001";
};

// One word of a segment (word_timestamps): its text as decoded (leading space included), times
// in seconds from the start of the audio and the mean probability of its tokens.
struct WhisperWord {
  std::string word;
  double start = 0.0, end = 0.0;
  double probability = 0.0;
};

struct WhisperSegment {
  int64_t id = 0;
  int64_t seek = 0;               // the window's first log-mel frame (10 ms each)
  double start = 0.0, end = 0.0;  // seconds from the start of the audio
  std::vector<int32_t> tokens;    // as transformers' segments (timestamp tokens included)
  std::string text;               // tokens without special/timestamp tokens, decoded
  double temperature = 0.0;
  double avg_logprob = 0.0;        // mean log-probability of the window's tokens (eos included)
  double compression_ratio = 0.0;  // of the window's token bytes, as transformers computes it
  double no_speech_prob = 0.0;     // P(<|nospeech|>) at <|startoftranscript|> (0 when not asked)
  std::vector<WhisperWord> words;  // with word_timestamps
};

struct WhisperTranscription {
  std::string text;       // the segments' text joined
  std::string language;   // e.g. "en" (the prompt's language token), "" when the model has none
  double duration = 0.0;  // seconds of audio
  std::vector<WhisperSegment> segments;
  std::vector<int32_t> tokens;  // every segment's tokens in order (transformers' sequences)
};

// Reported after each window; returning false stops the transcription, which then returns the
// segments of the windows done so far.
struct WhisperProgress {
  int64_t seek = 0, total_frames = 0;
};
using WhisperProgressFn = std::function<bool(const WhisperProgress&)>;

class WhisperTranscriber {
 public:
  // An HF Whisper folder: the model, generation_config.json, preprocessor_config.json and, when
  // present, tokenizer.json (without it text is empty and initial_prompt is refused).
  static std::unique_ptr<WhisperTranscriber> load(const std::string& path,
                                                  const LoadOptions& options = {});
  ~WhisperTranscriber();

  WhisperTranscription transcribe_file(const std::string& path,
                                       const WhisperTranscribeOptions& options = {},
                                       const modalities::AudioLimits& limits = {},
                                       const WhisperProgressFn& progress = {});
  WhisperTranscription transcribe(modalities::AudioStream& audio,
                                  const WhisperTranscribeOptions& options = {},
                                  const WhisperProgressFn& progress = {});
  // 16 kHz mono samples.
  WhisperTranscription transcribe_samples(std::span<const float> samples,
                                          const WhisperTranscribeOptions& options = {},
                                          const WhisperProgressFn& progress = {});

  Whisper& model() { return *model_; }
  const WhisperGenerationConfig& generation_config() const { return generation_; }
  const modalities::LogMelExtractor& features() const { return *features_; }
  tok::Tokenizer* tokenizer() { return tokenizer_.get(); }  // null without tokenizer.json

 private:
  WhisperTranscriber() = default;
  std::unique_ptr<Whisper> model_;
  WhisperGenerationConfig generation_;
  std::unique_ptr<modalities::LogMelExtractor> features_;
  std::unique_ptr<tok::Tokenizer> tokenizer_;
};

// The result in one of OpenAI's response_format values: "text" (the text and a newline), "json"
// ({"text"}), "verbose_json" (task, language, duration, text, segments with id, seek, start, end,
// text, tokens, temperature, avg_logprob, compression_ratio, no_speech_prob), "srt" or "vtt".
// `task` fills verbose_json's "task". Throws kInvalidArgument for another format.
// What verbose_json holds besides the text: "segments" (OpenAI's segment granularity), each
// segment's "words" as faster-whisper names them (word, start, end, probability), and OpenAI's
// top-level "words" (word granularity: word without its leading space, start, end).
struct WhisperJsonParts {
  bool segments = true;
  bool segment_words = true;  // when the segments have words (word_timestamps)
  bool words = false;
};
std::string format_transcription(const WhisperTranscription& result, const std::string& format,
                                 const std::string& task = "transcribe",
                                 const WhisperJsonParts& parts = {});
bool is_transcription_format(const std::string& format);

// transformers' _retrieve_compression_ratio: bytes of the ids (each in int(log2(vocab) / 8) + 1
// little-endian bytes) over their zlib-compressed size.
double whisper_compression_ratio(std::span<const int32_t> tokens, int64_t vocab_size);

}  // namespace af::models
