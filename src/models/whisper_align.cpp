// Whisper word timestamps: CTranslate2's Whisper::align (cross-attention of the alignment heads,
// softmax, normalisation over the tokens, median filter, DTW) and faster-whisper's
// find_alignment / add_word_timestamps (words, punctuation merging, duration clamps).
#include "models/whisper_align.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string_view>

#include "af/backend/key_cache.hpp"
#include "af/core/error.hpp"
#include "af/tokenizer/tokenizer.hpp"

namespace af::models {
namespace {

constexpr double kTokensPerSecond = 50.0;   // encoder positions per second
constexpr double kFramesPerSecond = 100.0;  // log-mel frames per second

// The code points of UTF-8 text (the tokenizer's output is valid UTF-8).
std::u32string code_points(std::string_view s) {
  std::u32string out;
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    const size_t n = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    char32_t c = n == 1 ? b : n == 2 ? (b & 0x1F) : n == 3 ? (b & 0x0F) : (b & 0x07);
    for (size_t k = 1; k < n && i + k < s.size(); ++k) {
      c = (c << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    }
    out.push_back(c);
    i += n;
  }
  return out;
}

// Python's str.isspace.
bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// Python's str.strip() of UTF-8 text.
std::string python_strip(const std::string& s) {
  std::vector<size_t> offsets;  // byte offset of each code point, then the end
  for (size_t i = 0; i < s.size();) {
    offsets.push_back(i);
    const auto lead = static_cast<unsigned char>(s[i]);
    i += lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
  }
  offsets.push_back(s.size());
  const std::u32string cps = code_points(s);
  size_t a = 0, b = cps.size();
  while (a < b && is_python_space(cps[a])) ++a;
  while (b > a && is_python_space(cps[b - 1])) --b;
  return s.substr(offsets[a], std::min(offsets[b], s.size()) - offsets[a]);
}

// Python's `needle in haystack` for str (valid UTF-8 matches at character boundaries).
bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

constexpr std::string_view kPythonPunctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

// Softmax over each row of x [rows, cols] in place.
void softmax_rows(std::vector<float>& x, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x.data() + r * cols;
    const float top = *std::max_element(row, row + cols);
    float sum = 0.0f;
    for (int64_t c = 0; c < cols; ++c) sum += (row[c] = std::exp(row[c] - top));
    for (int64_t c = 0; c < cols; ++c) row[c] /= sum;
  }
}

// CTranslate2's LayerNorm(axis -2, epsilon 0) without weights: each (head, frame) column of x
// [heads, tokens, frames] standardised over the tokens (float sums, as its kernel).
void normalize_over_tokens(std::vector<float>& x, int64_t heads, int64_t tokens, int64_t frames) {
  for (int64_t h = 0; h < heads; ++h) {
    float* base = x.data() + h * tokens * frames;
    for (int64_t f = 0; f < frames; ++f) {
      float sum = 0.0f, sum_squares = 0.0f;
      for (int64_t t = 0; t < tokens; ++t) {
        const float v = base[t * frames + f];
        sum += v;
        sum_squares += v * v;
      }
      const float mean = sum / float(tokens);
      const float variance = std::max(sum_squares / float(tokens) - mean * mean, 0.0f);
      const float rstd = 1.0f / std::sqrt(variance);
      for (int64_t t = 0; t < tokens; ++t) {
        base[t * frames + f] = (base[t * frames + f] - mean) * rstd;
      }
    }
  }
}

// The text-vocabulary probability of each next token: softmax of logits [rows, vocab] over the
// ids below eot (CTranslate2's SoftMax with lengths), at the id that follows.
std::vector<float> text_token_probs(const std::vector<float>& logits, int64_t vocab,
                                    std::span<const int32_t> input, size_t first, size_t count,
                                    int32_t eot) {
  std::vector<float> probs;
  for (size_t i = first; i < first + count; ++i) {
    const float* row = logits.data() + int64_t(i) * vocab;
    const int64_t n = std::min<int64_t>(eot, vocab);
    const float top = *std::max_element(row, row + n);
    double sum = 0.0;
    for (int64_t j = 0; j < n; ++j) sum += std::exp(double(row[j] - top));
    const int32_t next = input[i + 1];
    probs.push_back(next < n ? float(std::exp(double(row[next] - top)) / sum) : 0.0f);
  }
  return probs;
}

// faster-whisper's split_tokens_on_unicode: a word ends where the decoded tokens so far hold no
// replacement character that the whole decoded text does not have at the same place.
void split_on_unicode(const tok::Tokenizer& tokenizer, std::span<const int32_t> tokens,
                      std::vector<std::string>& words,
                      std::vector<std::vector<int32_t>>& word_tokens) {
  constexpr char32_t kReplacement = 0xFFFD;
  const std::u32string full = code_points(tokenizer.decode(tokens, true));
  std::vector<int32_t> current;
  size_t offset = 0;
  for (int32_t token : tokens) {
    current.push_back(token);
    const std::string decoded = tokenizer.decode(current, true);
    const std::u32string cps = code_points(decoded);
    const size_t at = cps.find(kReplacement);
    if (at == std::u32string::npos ||
        (at + offset < full.size() && full[at + offset] == kReplacement)) {
      words.push_back(decoded);
      word_tokens.push_back(std::move(current));
      current.clear();
      offset += cps.size();
    }
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

bool is_sentence_end(const std::string& word) { return contains(".\u3002!\uff01?\uff1f", word); }

// faster-whisper's find_alignment: the window's words with times from the DTW path's jumps.
std::vector<WhisperWordTiming> find_alignment(const WhisperWordContext& ctx,
                                              std::span<const int32_t> text_tokens) {
  if (text_tokens.empty()) return {};
  // faster-whisper's sot_sequence: the prompt without <|notimestamps|>.
  std::vector<int32_t> start = ctx.init;
  if (!start.empty() && start.back() == ctx.config->no_timestamps_token_id) start.pop_back();
  const WhisperTokenAlignment a =
      whisper_align_tokens(*ctx.model, *ctx.state, *ctx.config, start, text_tokens, ctx.num_frames);
  if (a.path.empty()) return {};
  const int32_t eot = ctx.config->eos_token_id;
  std::vector<int32_t> with_eot(text_tokens.begin(), text_tokens.end());
  with_eot.push_back(eot);
  std::vector<std::string> words;
  std::vector<std::vector<int32_t>> word_tokens;
  // English-only models have no language token; faster-whisper splits their words as "en".
  const std::string language = ctx.language.empty() ? "en" : ctx.language;
  whisper_split_words(*ctx.tokenizer, eot, with_eot, language, words, word_tokens);
  if (word_tokens.size() <= 1) return {};
  std::vector<size_t> boundaries{0};
  for (size_t i = 0; i + 1 < word_tokens.size(); ++i) {
    boundaries.push_back(boundaries.back() + word_tokens[i].size());
  }
  std::vector<double> jump_times;
  for (size_t k = 0; k < a.path.size(); ++k) {
    if (k == 0 || a.path[k].first != a.path[k - 1].first) {
      jump_times.push_back(double(a.path[k].second) / kTokensPerSecond);
    }
  }
  std::vector<WhisperWordTiming> out;
  for (size_t w = 0; w + 1 < boundaries.size(); ++w) {
    const size_t i = boundaries[w], j = boundaries[w + 1];
    if (j >= jump_times.size()) break;  // cannot happen: one jump per token row
    WhisperWordTiming t;
    t.word = words[w];
    t.tokens = word_tokens[w];
    t.start = jump_times[i];
    t.end = jump_times[j];
    double sum = 0.0;
    for (size_t k = i; k < j && k < a.text_token_probs.size(); ++k) sum += a.text_token_probs[k];
    t.probability = j > i ? sum / double(j - i) : std::numeric_limits<double>::quiet_NaN();
    out.push_back(std::move(t));
  }
  return out;
}

// The words of one segment from the window's alignment, from word `index` on, until they hold
// the segment's text tokens.
std::vector<WhisperWord> segment_words(const std::vector<WhisperWordTiming>& alignment,
                                       size_t& index, size_t text_tokens, double time_offset) {
  std::vector<WhisperWord> words;
  size_t saved = 0;
  while (index < alignment.size() && saved < text_tokens) {
    const WhisperWordTiming& t = alignment[index];
    if (!t.word.empty()) {
      words.push_back({t.word, whisper_round2(time_offset + t.start),
                       whisper_round2(time_offset + t.end), t.probability});
    }
    saved += t.tokens.size();
    ++index;
  }
  return words;
}

// faster-whisper's clamps of a segment's first and last words (long words after a pause, words
// far past the segment's timestamps), and the segment times moved to its words.
void clamp_segment_words(WhisperSegment& s, std::vector<WhisperWord>& words, double median_duration,
                         double max_duration, double& last_speech_timestamp) {
  if (words.empty()) return;
  if (words[0].end - last_speech_timestamp > median_duration * 4 &&
      (words[0].end - words[0].start > max_duration ||
       (words.size() > 1 && words[1].end - words[0].start > max_duration * 2))) {
    if (words.size() > 1 && words[1].end - words[1].start > max_duration) {
      const double boundary = std::max(words[1].end / 2, words[1].end - max_duration);
      words[0].end = words[1].start = boundary;
    }
    words[0].start = std::max(0.0, words[0].end - max_duration);
  }
  if (s.start < words[0].end && s.start - 0.5 > words[0].start) {
    words[0].start = std::max(0.0, std::min(words[0].end - median_duration, s.start));
  } else {
    s.start = words[0].start;
  }
  if (s.end > words.back().start && s.end + 0.5 < words.back().end) {
    words.back().end = std::max(words.back().start + median_duration, s.end);
  } else {
    s.end = words.back().end;
  }
  last_speech_timestamp = s.end;
}

// faster-whisper's get_end: the last word's end, else the last segment's.
std::optional<double> last_end(const std::vector<WhisperSegment>& segments) {
  for (auto s = segments.rbegin(); s != segments.rend(); ++s) {
    if (!s->words.empty()) return s->words.back().end;
  }
  if (segments.empty()) return std::nullopt;
  return segments.back().end;
}

}  // namespace

void WhisperCrossScores::record(int64_t layer, const float* q, const float* keys, int64_t m,
                                int64_t heads_total, int64_t head_dim, int64_t positions,
                                float scale) {
  const size_t size = heads.size() * size_t(m * positions);
  if (scores.size() != size) scores.assign(size, 0.0f);
  std::vector<float> scaled(static_cast<size_t>(head_dim));
  for (size_t i = 0; i < heads.size(); ++i) {
    const auto [l, h] = heads[i];
    if (l != layer) continue;
    for (int64_t t = 0; t < m; ++t) {
      // CTranslate2 scales the queries before the product.
      const float* qh = q + t * heads_total * head_dim + h * head_dim;
      for (int64_t d = 0; d < head_dim; ++d) scaled[size_t(d)] = qh[d] * scale;
      float* out = scores.data() + (int64_t(i) * m + t) * positions;
      for (int64_t p0 = 0; p0 < positions; p0 += kKeyBlock) {
        const float* block = keys + key_block_offset(p0, h, heads_total, head_dim);
        float acc[kKeyBlock] = {};
        for (int64_t d = 0; d < head_dim; ++d) {
          for (int64_t k = 0; k < kKeyBlock; ++k)
            acc[k] += scaled[size_t(d)] * block[d * kKeyBlock + k];
        }
        for (int64_t k = 0; k < kKeyBlock && p0 + k < positions; ++k) out[p0 + k] = acc[k];
      }
    }
  }
}

std::vector<float> whisper_median_filter(std::span<const float> x, int64_t rows, int64_t cols,
                                         int64_t width) {
  std::vector<float> out(x.begin(), x.end());
  const int64_t rank = width / 2;
  if (cols <= rank) return out;
  std::vector<float> window(static_cast<size_t>(width));
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x.data() + r * cols;
    for (int64_t j = 0; j < cols; ++j) {
      for (int64_t k = -rank; k <= rank; ++k) {
        int64_t read = std::abs(j + k);
        if (read >= cols) read = cols - (read - cols) - 2;
        window[size_t(k + rank)] = in[read];
      }
      std::nth_element(window.begin(), window.begin() + rank, window.end());
      out[size_t(r * cols + j)] = window[size_t(rank)];
    }
  }
  return out;
}

std::vector<std::pair<int64_t, int64_t>> whisper_negative_dtw(std::span<const float> x, int64_t n,
                                                              int64_t m) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const auto at = [&](int64_t i, int64_t j) { return size_t(i * (m + 1) + j); };
  std::vector<float> cost(size_t((n + 1) * (m + 1)), kInf);
  std::vector<int8_t> trace(cost.size(), -1);
  cost[0] = 0.0f;
  for (int64_t j = 1; j <= m; ++j) {
    for (int64_t i = 1; i <= n; ++i) {
      const float c0 = cost[at(i - 1, j - 1)], c1 = cost[at(i - 1, j)], c2 = cost[at(i, j - 1)];
      float c = c2;
      int8_t t = 2;
      if (c0 < c1 && c0 < c2) {
        c = c0, t = 0;
      } else if (c1 < c0 && c1 < c2) {
        c = c1, t = 1;
      }
      cost[at(i, j)] = -x[size_t((i - 1) * m + (j - 1))] + c;
      trace[at(i, j)] = t;
    }
  }
  for (int64_t k = 0; k <= m; ++k) trace[at(0, k)] = 2;
  for (int64_t k = 0; k <= n; ++k) trace[at(k, 0)] = 1;
  std::vector<std::pair<int64_t, int64_t>> path;
  for (int64_t i = n, j = m; i > 0 || j > 0;) {
    path.emplace_back(i - 1, j - 1);
    const int8_t t = trace[at(i, j)];
    if (t == 0) {
      --i, --j;
    } else if (t == 1) {
      --i;
    } else {
      --j;
    }
  }
  std::reverse(path.begin(), path.end());
  return path;
}

WhisperTokenAlignment whisper_align_tokens(Whisper& model, WhisperState& state,
                                           const WhisperGenerationConfig& config,
                                           std::span<const int32_t> start,
                                           std::span<const int32_t> text_tokens, int64_t num_frames,
                                           int64_t median_filter_width) {
  const WhisperConfig& mc = model.config();
  AF_CHECK(!config.alignment_heads.empty(), ErrorCode::kUnsupported, "whisper", model.path(),
           ": word timestamps need \"alignment_heads\" in generation_config.json (the "
           "cross-attention heads that follow the audio; tools/convert_ct2_whisper.py writes "
           "CTranslate2's)");
  for (const auto& [layer, head] : config.alignment_heads) {
    AF_CHECK(layer < mc.decoder_layers && head < mc.decoder_heads, ErrorCode::kFormat, "whisper",
             model.path(), ": alignment head [", layer, ", ", head, "] is outside the decoder's ",
             mc.decoder_layers, " layers x ", mc.decoder_heads, " heads");
  }
  WhisperTokenAlignment result;
  const int64_t frames = std::min(num_frames / 2, mc.max_source_positions);
  std::vector<int32_t> input(start.begin(), start.end());
  input.push_back(config.no_timestamps_token_id);
  input.insert(input.end(), text_tokens.begin(), text_tokens.end());
  input.push_back(config.eos_token_id);
  const int64_t tokens = int64_t(input.size());
  // CTranslate2 aligns nothing without frames; a sequence past the decoder's positions cannot be
  // decoded at all (faster-whisper never makes one: it decodes at most half of them).
  if (text_tokens.empty() || frames <= 0 || tokens > mc.max_target_positions) return result;

  WhisperCrossScores cross;
  cross.heads = config.alignment_heads;
  state.n_past = 0;
  const std::vector<float> logits = model.decode(state, input, true, &cross);
  result.text_token_probs = text_token_probs(logits, mc.vocab_size, input, start.size(),
                                             text_tokens.size(), config.eos_token_id);

  // [heads, tokens, frames]: the scores over the window's frames, as probabilities.
  const int64_t heads = int64_t(cross.heads.size()), positions = mc.max_source_positions;
  std::vector<float> w(size_t(heads * tokens * frames));
  for (int64_t r = 0; r < heads * tokens; ++r) {
    std::copy_n(cross.scores.begin() + r * positions, frames, w.begin() + r * frames);
  }
  softmax_rows(w, heads * tokens, frames);
  normalize_over_tokens(w, heads, tokens, frames);
  w = whisper_median_filter(w, heads * tokens, frames, median_filter_width);
  std::vector<float> mean(size_t(tokens * frames), 0.0f);
  for (int64_t h = 0; h < heads; ++h) {
    for (size_t k = 0; k < mean.size(); ++k) mean[k] += w[size_t(h) * mean.size() + k];
  }
  for (float& v : mean) v /= float(heads);
  // Rows of <|notimestamps|> and the text tokens: each predicts the next token.
  const int64_t rows = int64_t(text_tokens.size()) + 1;
  const std::span<const float> matrix(mean.data() + int64_t(start.size()) * frames,
                                      size_t(rows * frames));
  result.path = whisper_negative_dtw(matrix, rows, frames);
  return result;
}

void whisper_split_words(const tok::Tokenizer& tokenizer, int32_t eot,
                         std::span<const int32_t> tokens, const std::string& language,
                         std::vector<std::string>& words,
                         std::vector<std::vector<int32_t>>& word_tokens) {
  std::vector<std::string> subwords;
  std::vector<std::vector<int32_t>> subword_tokens;
  split_on_unicode(tokenizer, tokens, subwords, subword_tokens);
  static const char* const kNoSpaces[] = {"zh", "ja", "th", "lo", "my", "yue"};
  if (std::find(std::begin(kNoSpaces), std::end(kNoSpaces), language) != std::end(kNoSpaces)) {
    words = std::move(subwords);
    word_tokens = std::move(subword_tokens);
    return;
  }
  for (size_t i = 0; i < subwords.size(); ++i) {
    const bool special = subword_tokens[i][0] >= eot;
    const bool with_space = subwords[i].starts_with(" ");
    // Python's `in` is a substring test: "" and runs such as "()" count as punctuation too.
    const bool punctuation = contains(kPythonPunctuation, python_strip(subwords[i]));
    if (special || with_space || punctuation || words.empty()) {
      words.push_back(subwords[i]);
      word_tokens.push_back(subword_tokens[i]);
    } else {
      words.back() += subwords[i];
      word_tokens.back().insert(word_tokens.back().end(), subword_tokens[i].begin(),
                                subword_tokens[i].end());
    }
  }
}

void whisper_merge_punctuations(std::vector<WhisperWordTiming>& alignment,
                                const std::string& prepended, const std::string& appended) {
  if (alignment.size() < 2) return;
  for (int64_t i = int64_t(alignment.size()) - 2, j = i + 1; i >= 0; --i) {
    WhisperWordTiming& previous = alignment[size_t(i)];
    WhisperWordTiming& following = alignment[size_t(j)];
    if (previous.word.starts_with(" ") && contains(prepended, python_strip(previous.word))) {
      following.word = previous.word + following.word;
      following.tokens.insert(following.tokens.begin(), previous.tokens.begin(),
                              previous.tokens.end());
      previous.word.clear();
      previous.tokens.clear();
    } else {
      j = i;
    }
  }
  for (size_t i = 0, j = 1; j < alignment.size(); ++j) {
    WhisperWordTiming& previous = alignment[i];
    WhisperWordTiming& following = alignment[j];
    if (!previous.word.ends_with(" ") && contains(appended, following.word)) {
      previous.word += following.word;
      previous.tokens.insert(previous.tokens.end(), following.tokens.begin(),
                             following.tokens.end());
      following.word.clear();
      following.tokens.clear();
    } else {
      i = j;
    }
  }
}

double whisper_round2(double x) {
  if (!std::isfinite(x)) return x;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f", x);  // glibc rounds the exact value, ties to even
  return std::strtod(buf, nullptr);
}

double whisper_add_word_timestamps(std::vector<WhisperSegment>& segments,
                                   const WhisperWordContext& ctx, double last_speech_timestamp) {
  if (segments.empty()) return last_speech_timestamp;
  const int32_t eot = ctx.config->eos_token_id;
  std::vector<int32_t> text_tokens;
  std::vector<size_t> segment_text_tokens;
  for (const WhisperSegment& s : segments) {
    size_t n = 0;
    for (int32_t t : s.tokens) {
      if (t < eot) text_tokens.push_back(t), ++n;
    }
    segment_text_tokens.push_back(n);
  }
  std::vector<WhisperWordTiming> alignment = find_alignment(ctx, text_tokens);
  std::vector<double> durations;
  for (const WhisperWordTiming& w : alignment) {
    if (w.end - w.start != 0.0) durations.push_back(w.end - w.start);
  }
  const double median_duration = std::min(0.7, durations.empty() ? 0.0 : median(durations));
  const double max_duration = median_duration * 2;
  // Words at sentence boundaries no longer than twice the median word.
  if (!durations.empty()) {
    for (size_t i = 1; i < alignment.size(); ++i) {
      if (alignment[i].end - alignment[i].start <= max_duration) continue;
      if (is_sentence_end(alignment[i].word)) {
        alignment[i].end = alignment[i].start + max_duration;
      } else if (is_sentence_end(alignment[i - 1].word)) {
        alignment[i].start = alignment[i].end - max_duration;
      }
    }
  }
  whisper_merge_punctuations(alignment, ctx.prepend_punctuations, ctx.append_punctuations);
  const double time_offset = double(ctx.seek) / kFramesPerSecond;
  size_t index = 0;
  for (size_t i = 0; i < segments.size(); ++i) {
    std::vector<WhisperWord> words =
        segment_words(alignment, index, segment_text_tokens[i], time_offset);
    clamp_segment_words(segments[i], words, median_duration, max_duration, last_speech_timestamp);
    segments[i].words = std::move(words);
  }
  return last_speech_timestamp;
}

int64_t whisper_window_words(std::vector<WhisperSegment>& segments,
                             const WhisperWordContext& context, std::span<const int32_t> tokens,
                             int64_t advance, double& last_speech_timestamp) {
  whisper_add_word_timestamps(segments, context, last_speech_timestamp);
  const int32_t ts_begin = context.config->timestamp_begin();
  const auto is_ts = [&](int32_t id) { return id >= ts_begin; };
  const size_t n = tokens.size();
  const bool single_ending = n >= 2 && !is_ts(tokens[n - 2]) && is_ts(tokens[n - 1]);
  const std::optional<double> end = last_end(segments);
  // faster-whisper compares with seek * time_per_frame and rounds as Python (ties to even).
  if (!single_ending && end && *end > double(context.seek) * 0.01) {
    // Never backwards or in place (faster-whisper would decode the same window forever).
    const auto next = int64_t(std::nearbyint(*end * kFramesPerSecond));
    if (next > context.seek) advance = next - context.seek;
  }
  if (end) last_speech_timestamp = *end;
  return advance;
}

}  // namespace af::models
