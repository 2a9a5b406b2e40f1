#pragma once
// Whisper word timestamps, as faster-whisper's add_word_timestamps / find_alignment over
// CTranslate2's Whisper::align (itself openai-whisper's timing.py): the pieces are exposed for
// the unit tests; WhisperTranscriber calls whisper_add_word_timestamps once per window.
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "af/models/whisper.hpp"
#include "af/models/whisper_generate.hpp"
#include "af/models/whisper_transcribe.hpp"

namespace af::tok {
class Tokenizer;
}

namespace af::models {

// CTranslate2's MedianFilter along the last axis of x [rows, cols]: a window of `width` values
// reflected at the edges (no edge repeated); cols <= width / 2 leaves x as it is.
std::vector<float> whisper_median_filter(std::span<const float> x, int64_t rows, int64_t cols,
                                         int64_t width);

// CTranslate2's negative_dtw: the cheapest path through -x [n, m] from (0, 0) to (n-1, m-1)
// (steps down, right or diagonal; ties go right), as (row, column) pairs.
std::vector<std::pair<int64_t, int64_t>> whisper_negative_dtw(std::span<const float> x, int64_t n,
                                                              int64_t m);

// The alignment of one window's text tokens (CTranslate2's WhisperAlignmentResult).
struct WhisperTokenAlignment {
  std::vector<std::pair<int64_t, int64_t>> path;  // (token row, encoder frame) DTW pairs
  std::vector<float> text_token_probs;            // P(token) over the text vocabulary
};

// CTranslate2's Whisper::align for one window: decodes start + <|notimestamps|> + text + eot in
// `state` (a state of the window's encoder output; its self-attention cache is overwritten),
// takes the alignment heads' cross-attention over the first num_frames / 2 encoder positions,
// softmax, normalised over the tokens, median-filtered along time, averaged over the heads, and
// aligns the rows of <|notimestamps|> and the text tokens to time by DTW. Empty when there are
// no text tokens, no frames, or the sequence does not fit max_target_positions.
WhisperTokenAlignment whisper_align_tokens(Whisper& model, WhisperState& state,
                                           const WhisperGenerationConfig& config,
                                           std::span<const int32_t> start,
                                           std::span<const int32_t> text_tokens, int64_t num_frames,
                                           int64_t median_filter_width = 7);

// A word of find_alignment: text, tokens, times in seconds from the window start, probability.
struct WhisperWordTiming {
  std::string word;
  std::vector<int32_t> tokens;
  double start = 0.0, end = 0.0, probability = 0.0;
};

// faster-whisper's Tokenizer.split_to_word_tokens of tokens (text tokens + eot): at whole
// characters for zh, ja, th, lo, my and yue, else at spaces and punctuation.
void whisper_split_words(const tok::Tokenizer& tokenizer, int32_t eot,
                         std::span<const int32_t> tokens, const std::string& language,
                         std::vector<std::string>& words,
                         std::vector<std::vector<int32_t>>& word_tokens);

// faster-whisper's merge_punctuations: prepended punctuation joins the next word, appended the
// previous (the merged-away entries keep an empty word and no tokens).
void whisper_merge_punctuations(std::vector<WhisperWordTiming>& alignment,
                                const std::string& prepended, const std::string& appended);

// Python's round(x, 2): the decimal nearest the exact binary value (ties to even).
double whisper_round2(double x);

// What one window's word timestamps need besides its segments.
struct WhisperWordContext {
  Whisper* model = nullptr;
  WhisperState* state = nullptr;  // of the window's encoder output (its decoder cache reused)
  const WhisperGenerationConfig* config = nullptr;
  const tok::Tokenizer* tokenizer = nullptr;
  std::vector<int32_t> init;  // the window's prompt tokens (<|notimestamps|> is dropped)
  std::string language;       // its code ("en"; "" for English-only models), for word splitting
  int64_t seek = 0;           // the window's first frame
  int64_t num_frames = 0;     // its frames with audio
  std::string prepend_punctuations, append_punctuations;
};

// faster-whisper's add_word_timestamps for one window's segments: fills their words and moves
// their start/end to them. Returns the updated last_speech_timestamp.
double whisper_add_word_timestamps(std::vector<WhisperSegment>& segments,
                                   const WhisperWordContext& context, double last_speech_timestamp);

// One window's word step of faster-whisper's loop: adds the words, then (unless the window ended
// on a single timestamp) the next window starts at the last word's end. Returns the frames to
// advance (`advance` when the words do not move it); updates last_speech_timestamp.
int64_t whisper_window_words(std::vector<WhisperSegment>& segments,
                             const WhisperWordContext& context, std::span<const int32_t> tokens,
                             int64_t advance, double& last_speech_timestamp);

}  // namespace af::models
