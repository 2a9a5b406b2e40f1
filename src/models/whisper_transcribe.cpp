// Whisper transcription: the features of short and long inputs, transformers' sequential
// long-form loop (WhisperGenerationMixin.generate with return_timestamps / return_segments) and
// the segments' text.
#include "af/models/whisper_transcribe.hpp"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <filesystem>
#include <functional>
#include <limits>
#include <optional>

#include "af/core/error.hpp"
#include "af/tokenizer/tokenizer.hpp"
#include "models/whisper_align.hpp"

namespace af::models {
namespace {

constexpr int64_t kInputStride = 2;      // encoder conv strides: 2 log-mel frames per position
constexpr double kTimePrecision = 0.02;  // seconds per timestamp token
constexpr size_t kReadBlock = 1 << 16;   // samples read from the stream at a time

// The samples of a stream kept from `offset` on: enough for the frames still to come, never the
// whole input.
class SampleWindow {
 public:
  explicit SampleWindow(modalities::AudioStream& stream) : stream_(stream) {}

  // Reads until `end` samples were read in all or the stream ends; returns the samples read.
  int64_t fill_to(int64_t end) {
    std::vector<float> block(kReadBlock);
    while (read_ < end && !eof_) {
      const size_t n = stream_.read(block);
      if (n == 0) {
        eof_ = true;
        break;
      }
      buffer_.insert(buffer_.end(), block.begin(), block.begin() + std::ptrdiff_t(n));
      read_ += int64_t(n);
    }
    return read_;
  }
  void drop_before(int64_t sample) {
    const int64_t n = std::clamp<int64_t>(sample - offset_, 0, int64_t(buffer_.size()));
    buffer_.erase(buffer_.begin(), buffer_.begin() + std::ptrdiff_t(n));
    offset_ += n;
  }
  bool eof() const { return eof_; }
  int64_t offset() const { return offset_; }
  const std::vector<float>& buffer() const { return buffer_; }

 private:
  modalities::AudioStream& stream_;
  std::vector<float> buffer_;  // samples [offset_, offset_ + size)
  int64_t offset_ = 0, read_ = 0;
  bool eof_ = false;
};

// A stream followed by `pad` zero samples (faster-whisper's extractor pads the audio by one hop).
class PaddedStream : public modalities::AudioStream {
 public:
  PaddedStream(modalities::AudioStream& inner, int64_t pad) : inner_(inner), pad_(pad) {}
  size_t read(std::span<float> out) override {
    size_t n = inner_done_ ? 0 : inner_.read(out);
    if (n < out.size()) inner_done_ = true;
    const size_t zeros = std::min(out.size() - n, size_t(pad_ - padded_));
    std::fill_n(out.begin() + std::ptrdiff_t(n), zeros, 0.0f);
    padded_ += int64_t(zeros);
    return n + zeros;
  }
  void rewind() override {
    inner_.rewind();
    inner_done_ = false;
    padded_ = 0;
  }
  const std::string& origin() const override { return inner_.origin(); }

 private:
  modalities::AudioStream& inner_;
  int64_t pad_ = 0, padded_ = 0;
  bool inner_done_ = false;
};

// The log-mel input of the whole audio, window by window: transformers' extractor over all
// samples (truncation=False) for long inputs, or the 30 s padded chunk for short ones; with
// kFasterWhisper always the former, over the audio and one hop of zeros.
class MelSource {
 public:
  MelSource(modalities::AudioStream& stream, const modalities::LogMelExtractor& fe,
            WhisperFeatures mode)
      : pad_(mode == WhisperFeatures::kFasterWhisper ? fe.config().hop_length : 0),
        padded_(pad_ > 0 ? std::make_unique<PaddedStream>(stream, pad_) : nullptr),
        stream_(padded_ ? *padded_ : stream),
        fe_(fe) {
    scan();
  }

  bool short_form() const { return !short_mel_.empty(); }
  int64_t total_samples() const { return total_ - pad_; }
  // Frames the decoding loop walks: 3000 for a padded short input, else total / hop (without
  // the frame of the zero pad, as faster-whisper's content_frames).
  int64_t total_frames() const {
    return short_form() ? window_frames() : total_ / fe_.config().hop_length - (pad_ > 0 ? 1 : 0);
  }
  int64_t window_frames() const { return fe_.config().n_frames(); }

  // Frames [seek, seek + count) zero-padded to window_frames() ([n_mels, window_frames()]).
  // Long inputs are read forwards only: seek never goes back.
  std::vector<float> window(int64_t seek, int64_t count) {
    const int64_t n_mels = fe_.config().feature_size, width = window_frames();
    std::vector<float> out(size_t(n_mels * width), 0.0f);
    if (short_form()) {
      for (int64_t m = 0; m < n_mels; ++m) {
        std::copy_n(short_mel_.begin() + m * width + seek, count, out.begin() + m * width);
      }
      return out;
    }
    const auto [begin, end] = fe_.frame_span(total_, seek, count);
    if (!samples_) {
      stream_.rewind();
      samples_ = std::make_unique<SampleWindow>(stream_);
    }
    samples_->drop_before(begin);
    samples_->fill_to(end);
    const std::vector<float>& buffer = samples_->buffer();
    const std::vector<float> mel = modalities::LogMelExtractor::finish(
        fe_.log10_frames(buffer, samples_->offset(), total_, seek, count), max_log10_);
    for (int64_t m = 0; m < n_mels; ++m) {
      std::copy_n(mel.begin() + m * count, count, out.begin() + m * width);
    }
    return out;
  }

 private:
  // First pass: the length, and for long inputs the largest log10 mel value of all frames (the
  // extractor's dynamic-range floor is relative to it).
  void scan() {
    const int64_t chunk = fe_.config().n_samples();
    if (pad_ == 0) {
      SampleWindow head(stream_);
      total_ = head.fill_to(chunk + 1);
      if (total_ <= chunk) {
        short_mel_ = fe_.compute(head.buffer()).data;
        return;
      }
    }
    stream_.rewind();
    SampleWindow s(stream_);
    const int64_t hop = fe_.config().hop_length, step = window_frames();
    max_log10_ = -std::numeric_limits<double>::infinity();
    for (int64_t first = 0;;) {
      const auto [begin, end] =
          fe_.frame_span(std::numeric_limits<int64_t>::max() / 4, first, step);
      s.drop_before(begin);
      const int64_t read = s.fill_to(std::max(end, (first + step) * hop));
      if (s.eof()) total_ = read;
      const int64_t frames = s.eof() ? total_ / hop : first + step;
      const int64_t count = std::max<int64_t>(0, std::min(step, frames - first));
      if (count > 0) {
        const int64_t total = s.eof() ? total_ : std::numeric_limits<int64_t>::max() / 4;
        for (double v : fe_.log10_frames(s.buffer(), s.offset(), total, first, count)) {
          max_log10_ = std::max(max_log10_, v);
        }
      }
      first += count;
      if (s.eof() && first >= frames) break;
    }
  }

  const int64_t pad_;  // zero samples after the audio (faster-whisper's features)
  std::unique_ptr<PaddedStream> padded_;
  modalities::AudioStream& stream_;
  const modalities::LogMelExtractor& fe_;
  int64_t total_ = 0;  // samples, pad_ included
  double max_log10_ = 0.0;
  std::vector<float> short_mel_;  // [n_mels, 3000] of a short input
  std::unique_ptr<SampleWindow> samples_;
};

// faster-whisper passes max_length (its 448, or prompt + max_new_tokens) to CTranslate2, which
// generates at most min(max_length / 2, max_length - prompt + 1) tokens (openai-whisper's
// sample_len of n_ctx / 2): the window's limit in ids, prompt included. The last token is never
// fed back, so the limit may pass max_target_positions by one.
int64_t ctranslate2_max_length(int64_t prompt, int64_t max_new_tokens, int64_t positions) {
  const int64_t total = max_new_tokens > 0 ? prompt + max_new_tokens : positions;
  const int64_t steps = std::min(total / 2, total - (prompt - 1));
  return std::min(prompt + std::max<int64_t>(steps, 1), positions + 1);
}

bool is_timestamp(int32_t id, int32_t ts_begin) { return ts_begin > 0 && id >= ts_begin; }

struct WindowSegments {
  std::vector<WhisperSegment> segments;
  int64_t advance = 0;  // frames to seek forward
};

// transformers' _retrieve_segment: split at each pair of consecutive timestamps; seek to the
// last closed timestamp unless the output ends on a single timestamp (then the whole window).
// With whole_frames (faster-whisper), a window without timestamps ends at its exact frame count
// and a closing timestamp pair is split as faster-whisper splits it.
WindowSegments split_segments(const std::vector<int32_t>& seq, int32_t ts_begin, int64_t seek,
                              int64_t seek_num_frames, bool whole_frames) {
  const double time_offset = double(seek) * kTimePrecision / double(kInputStride);
  const auto ts = [&](size_t i) { return is_timestamp(seq[i], ts_begin); };
  const bool single_ending = seq.size() >= 2 && !ts(seq.size() - 2) && ts(seq.size() - 1);
  std::vector<size_t> slices;
  for (size_t i = 0; i + 1 < seq.size(); ++i) {
    if (ts(i) && ts(i + 1)) slices.push_back(i + 1);
  }
  WindowSegments out;
  if (!slices.empty()) {
    // transformers keeps the closing pair's second timestamp in the last segment; faster-whisper
    // ends it at the pair's first, as every other segment (the rest is decoded again).
    const size_t closing = single_ending || whole_frames ? 0 : 1;
    if (single_ending) {
      slices.push_back(seq.size());
    } else {
      slices.back() += closing;
    }
    size_t last = 0;
    for (size_t i = 0; i < slices.size(); ++i) {
      const bool is_last = i + 1 == slices.size();
      WhisperSegment s;
      s.tokens.assign(seq.begin() + std::ptrdiff_t(last), seq.begin() + std::ptrdiff_t(slices[i]));
      const int32_t end_token = s.tokens[s.tokens.size() - (is_last ? 1 + closing : 1)];
      s.start = time_offset + double(s.tokens.front() - ts_begin) * kTimePrecision;
      s.end = time_offset + double(end_token - ts_begin) * kTimePrecision;
      out.segments.push_back(std::move(s));
      last = slices[i];
    }
    out.advance = single_ending ? seek_num_frames
                                : int64_t(seq[last - 1 - closing] - ts_begin) * kInputStride;
    return out;
  }
  // No closed segment: the whole window is one segment, ending at its last timestamp if any.
  // transformers computes the window's length in float32: int(frames * 0.01 / 0.02).
  double last_pos = whole_frames ? double(seek_num_frames) / double(kInputStride)
                                 : double(int64_t(float(seek_num_frames) * 0.01f / 0.02f));
  for (size_t i = seq.size(); i-- > 0;) {
    if (!ts(i)) continue;
    if (seq[i] != ts_begin) last_pos = double(seq[i] - ts_begin);
    break;
  }
  WhisperSegment s;
  s.tokens = seq;
  s.start = time_offset;
  s.end = time_offset + last_pos * kTimePrecision;
  out.segments.push_back(std::move(s));
  out.advance = seek_num_frames;
  return out;
}

// The previous segments' tokens as the next window's prompt (transformers' _pad_to_max_length
// with skip_ending_double_timestamps and cut_off_length): <|startofprev|> + the last tokens.
std::vector<int32_t> previous_tokens(const std::vector<std::vector<int32_t>>& segments,
                                     int32_t ts_begin, int32_t prev_sot, size_t cut_off) {
  std::vector<int32_t> all;
  for (const auto& t : segments) {
    const bool double_end = t.size() > 2 && is_timestamp(t[t.size() - 2], ts_begin);
    const size_t n = t.size() - (double_end ? 1 : 0);
    for (size_t i = 0; i < n; ++i) all.push_back(t[i]);
  }
  std::vector<int32_t> out;
  if (prev_sot >= 0) out.push_back(prev_sot);
  const size_t from = all.size() > cut_off ? all.size() - cut_off : 0;
  out.insert(out.end(), all.begin() + std::ptrdiff_t(from), all.end());
  return out;
}

std::string language_code(const WhisperGenerationConfig& c, int32_t id) {
  for (const auto& [name, lang] : c.lang_to_id) {
    if (lang != id) continue;
    if (name.size() > 4 && name.starts_with("<|") && name.ends_with("|>")) {
      return name.substr(2, name.size() - 4);
    }
    return name;
  }
  return "";
}

std::string trim_copy(const std::string& s) {
  const size_t a = s.find_first_not_of(' '), b = s.find_last_not_of(' ');
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

double zlib_ratio(std::span<const uint8_t> bytes) {
  if (bytes.empty()) return 0.0;
  uLongf size = compressBound(uLong(bytes.size()));
  std::vector<uint8_t> packed(size);
  AF_CHECK(compress2(packed.data(), &size, bytes.data(), uLong(bytes.size()),
                     Z_DEFAULT_COMPRESSION) == Z_OK,
           ErrorCode::kInternal, "whisper", "zlib compress failed");
  return double(bytes.size()) / double(size);
}

// faster-whisper's get_compression_ratio: UTF-8 bytes over their zlib-compressed size.
double text_compression_ratio(const std::string& text) {
  return zlib_ratio(std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

void check_fallback_options(const WhisperTranscribeOptions& o) {
  AF_CHECK(!o.temperatures.empty() && o.temperatures.size() <= 64, ErrorCode::kInvalidArgument,
           "whisper", "temperatures: give 1 to 64 values (", o.temperatures.size(), " given)");
  for (double t : o.temperatures) {
    AF_CHECK(std::isfinite(t) && t >= 0.0 && t <= 100.0, ErrorCode::kInvalidArgument, "whisper",
             "temperature ", t, " outside 0..100");
  }
  AF_CHECK(o.best_of >= 1 && o.best_of <= 64, ErrorCode::kInvalidArgument, "whisper", "best_of ",
           o.best_of, " outside 1..64");
}

// What one window is decoded from, the same for every temperature tried.
struct WindowRequest {
  std::span<const float> encoded;  // [max_source_positions, d_model]
  std::span<const int32_t> input;  // previous tokens + init tokens
  bool timestamps = false;
  int64_t max_length = 0;
  size_t sot_position = 0;
  WhisperSearch search;
  uint64_t seek = 0;  // mixed into the sampling seed
};

struct Attempt {
  WhisperWindow window;  // eos removed
  double avg_logprob = 0.0, compression = 0.0, temperature = 0.0;
};

using CompressionFn = std::function<double(const std::vector<int32_t>&)>;

// A decoded window with its scores, eos removed.
Attempt scored_attempt(WhisperWindow window, double t, const WhisperGenerationConfig& c,
                       const CompressionFn& compression_of) {
  Attempt a;
  a.temperature = t;
  a.window = std::move(window);
  const std::vector<float>& lp = a.window.token_logprobs;
  for (float x : lp) a.avg_logprob += x;
  if (!lp.empty()) a.avg_logprob /= double(lp.size());
  std::vector<int32_t>& tokens = a.window.tokens;
  a.compression = compression_of(tokens);  // transformers counts eos' bytes too
  if (!tokens.empty() && tokens.back() == c.eos_token_id) tokens.pop_back();
  return a;
}

// One decode of the window at temperature t (state: a fresh decoder state for it).
Attempt attempt_at(Whisper& model, WhisperState& state, const WhisperGenerationConfig& c,
                   const WindowRequest& r, double t, uint64_t seed,
                   const CompressionFn& compression_of) {
  WhisperSearch search = r.search;
  search.temperature = t;
  search.seed = seed;
  return scored_attempt(whisper_decode_window(model, state, r.input, c, r.timestamps, r.max_length,
                                              r.sot_position, search),
                        t, c, compression_of);
}

// The window at each temperature in turn until one passes (faster-whisper's
// generate_with_fallback, transformers' _generate_with_fallback): temperature 0 uses the search
// (greedy or beams), above 0 the best of best_of samples by sum log-probability / length^penalty.
// An attempt fails when its compression ratio is above compression_ratio_threshold or its average
// log-probability below logprob_threshold, unless the window is silence (no-speech probability
// above no_speech_threshold with that low log-probability). When all fail, the best average
// log-probability among those under the compression threshold (else among all) is kept, with
// the last temperature.
// `decoded`: the first attempt when it was decoded already (windows side by side); `first` is
// then not used.
Attempt decode_with_fallback(Whisper& model, WhisperState& first, const WhisperGenerationConfig& c,
                             const WindowRequest& r, const WhisperTranscribeOptions& o,
                             const CompressionFn& compression_of,
                             std::optional<Attempt> decoded = std::nullopt) {
  std::vector<Attempt> all, below_threshold;
  bool first_used = false;
  for (size_t ti = 0; ti < o.temperatures.size(); ++ti) {
    const double t = o.temperatures[ti];
    const int64_t tries = t > 0.0 ? o.best_of : 1;
    std::optional<Attempt> best;
    double best_score = 0.0;
    for (int64_t i = 0; i < tries; ++i) {
      WhisperState fresh;
      if (first_used) fresh = model.start(r.encoded);
      const uint64_t seed = o.seed ^ (r.seek * 0x9E3779B97F4A7C15ull) ^ (ti << 32) ^ uint64_t(i);
      Attempt a =
          decoded ? std::move(*decoded)
                  : attempt_at(model, first_used ? fresh : first, c, r, t, seed, compression_of);
      decoded.reset();
      first_used = true;
      const size_t n = a.window.token_logprobs.size();
      const double score = a.avg_logprob * double(n) /
                           std::pow(double(std::max<size_t>(n, 1)), r.search.length_penalty);
      if (!best || score > best_score) {
        best = std::move(a);
        best_score = score;
      }
    }
    Attempt& a = *best;
    bool fallback = false;
    if (o.compression_ratio_threshold && a.compression > *o.compression_ratio_threshold) {
      fallback = true;
    } else {
      below_threshold.push_back(a);
    }
    const bool low_logprob = o.logprob_threshold && a.avg_logprob < *o.logprob_threshold;
    if (low_logprob) fallback = true;
    if (low_logprob && o.no_speech_threshold && a.window.no_speech_prob > *o.no_speech_threshold) {
      fallback = false;  // silence: the no-speech check decides
    }
    if (!fallback) return std::move(a);
    all.push_back(std::move(a));
  }
  std::vector<Attempt>& pool = below_threshold.empty() ? all : below_threshold;
  Attempt chosen = *std::max_element(
      pool.begin(), pool.end(),
      [](const Attempt& x, const Attempt& y) { return x.avg_logprob < y.avg_logprob; });
  chosen.temperature = o.temperatures.back();
  return chosen;
}

// A window decoded ahead of the loop (windows side by side): its encoder output and its first
// attempt.
struct DecodedWindow {
  std::vector<float> encoded;  // [max_source_positions, d_model]
  Attempt first;
};

// Decoder state bytes above which fewer windows go side by side (encoder output, cross and
// self-attention caches: about 51 MB per window for base, 4 windows fit).
constexpr int64_t kSideBySideBytes = int64_t{256} << 20;

int64_t state_bytes(const WhisperState& s) {
  int64_t floats = 0;
  for (const auto* caches : {&s.cross_k, &s.cross_v, &s.self_k, &s.self_v}) {
    for (const std::vector<float>& c : *caches) floats += int64_t(c.size());
  }
  return floats * int64_t(sizeof(float));
}

}  // namespace

double whisper_compression_ratio(std::span<const int32_t> tokens, int64_t vocab_size) {
  const size_t width = size_t(std::log2(double(std::max<int64_t>(vocab_size, 1))) / 8) + 1;
  std::vector<uint8_t> bytes;
  bytes.reserve(tokens.size() * width);
  for (int32_t t : tokens) {
    for (size_t b = 0; b < width; ++b) bytes.push_back(uint8_t((uint64_t(uint32_t(t)) >> (8 * b))));
  }
  return zlib_ratio(bytes);
}

std::unique_ptr<WhisperTranscriber> WhisperTranscriber::load(const std::string& path,
                                                             const LoadOptions& options) {
  std::unique_ptr<WhisperTranscriber> t(new WhisperTranscriber());
  t->model_ = Whisper::load(path, options);
  t->generation_ = WhisperGenerationConfig::load(path);
  t->features_ =
      std::make_unique<modalities::LogMelExtractor>(modalities::LogMelConfig::load(path));
  AF_CHECK(t->features_->config().feature_size == t->model_->config().num_mel_bins,
           ErrorCode::kFormat, "whisper", path, ": preprocessor_config.json has feature_size ",
           t->features_->config().feature_size, " but the model takes num_mel_bins ",
           t->model_->config().num_mel_bins);
  AF_CHECK(t->features_->config().n_frames() == t->model_->config().n_frames(), ErrorCode::kFormat,
           "whisper", path, ": preprocessor_config.json gives ", t->features_->config().n_frames(),
           " frames per window but the encoder takes ", t->model_->config().n_frames());
  if (std::filesystem::exists(std::filesystem::path(path) / "tokenizer.json")) {
    t->tokenizer_ = tok::Tokenizer::load(path);
  }
  return t;
}

WhisperTranscriber::~WhisperTranscriber() = default;

WhisperTranscription WhisperTranscriber::transcribe_file(const std::string& path,
                                                         const WhisperTranscribeOptions& options,
                                                         const modalities::AudioLimits& limits,
                                                         const WhisperProgressFn& progress) {
  auto stream = modalities::AudioStream::open(path, limits);
  return transcribe(*stream, options, progress);
}

WhisperTranscription WhisperTranscriber::transcribe_samples(std::span<const float> samples,
                                                            const WhisperTranscribeOptions& options,
                                                            const WhisperProgressFn& progress) {
  auto stream = modalities::AudioStream::from_samples(samples);
  return transcribe(*stream, options, progress);
}

WhisperTranscription WhisperTranscriber::transcribe(modalities::AudioStream& audio,
                                                    const WhisperTranscribeOptions& o,
                                                    const WhisperProgressFn& progress) {
  const WhisperGenerationConfig& c = generation_;
  check_fallback_options(o);
  std::vector<int32_t> prompt_ids = o.prompt_ids;
  if (prompt_ids.empty() && !trim_copy(o.initial_prompt).empty()) {
    AF_CHECK(tokenizer_ != nullptr, ErrorCode::kInvalidArgument, "whisper", model_->path(),
             ": a text prompt needs tokenizer.json");
    AF_CHECK(c.prev_sot() >= 0, ErrorCode::kUnsupported, "whisper", model_->path(),
             ": a prompt needs prev_sot_token_id in generation_config.json");
    prompt_ids = tokenizer_->encode(" " + trim_copy(o.initial_prompt), false);
    prompt_ids.insert(prompt_ids.begin(), c.prev_sot());
  }
  const bool faster_whisper = o.features == WhisperFeatures::kFasterWhisper;
  WhisperSearch search = o.search;
  search.ctranslate2 = search.ctranslate2 || faster_whisper;  // its beam search too
  MelSource mel(audio, *features_, o.features);
  WhisperTranscription out;
  out.duration = double(mel.total_samples()) / double(features_->config().sampling_rate);
  // transformers' long-form loop needs timestamps; faster-whisper's steps whole windows without.
  const bool timestamps = o.timestamps || (!faster_whisper && !mel.short_form());
  AF_CHECK(!timestamps || c.no_timestamps_token_id >= 0, ErrorCode::kUnsupported, "whisper",
           model_->path(), ": timestamps (and audio over 30 s) need no_timestamps_token_id");
  const WhisperConfig& mc = model_->config();
  const int32_t ts_begin = timestamps ? c.timestamp_begin() : -1;
  const size_t cut_off = size_t(mc.max_target_positions / 2 - 1);
  // The prompt without <|startofprev|> stands first among the segments (prompt_condition_type
  // "first-segment"), so conditioning starts from it; it is not part of the result.
  std::vector<std::vector<int32_t>> history;
  if (!prompt_ids.empty()) {
    // transformers strips only an explicit prev_sot_token_id here (not the fallback).
    const bool strip = c.prev_sot_token_id >= 0 && prompt_ids.front() == c.prev_sot_token_id;
    history.emplace_back(prompt_ids.begin() + (strip ? 1 : 0), prompt_ids.end());
  }
  const auto text_of = [&](const std::vector<int32_t>& ids) {
    std::vector<int32_t> text_ids;
    for (int32_t id : ids) {
      if (id < c.eos_token_id || c.eos_token_id < 0) text_ids.push_back(id);
    }
    return tokenizer_->decode(text_ids, true);
  };
  // faster-whisper drops segments without duration or text (from its output and its prompts).
  const auto has_content = [&](const WhisperSegment& s) {
    if (s.start == s.end) return false;
    if (!tokenizer_) return true;
    const std::string text = text_of(s.tokens);
    return text.find_first_not_of(" \t\n\r\f\v") != std::string::npos;
  };
  // faster-whisper measures the text's compression, transformers the token bytes'.
  const CompressionFn compression_of = [&](const std::vector<int32_t>& tokens) {
    if (!faster_whisper || !tokenizer_) return whisper_compression_ratio(tokens, mc.vocab_size);
    const std::string text = text_of(tokens);
    const size_t a = text.find_first_not_of(" \t\n\r\f\v");
    if (a == std::string::npos) return 0.0;
    const size_t b = text.find_last_not_of(" \t\n\r\f\v");
    return text_compression_ratio(text.substr(a, b - a + 1));
  };
  AF_CHECK(!o.word_timestamps || tokenizer_ != nullptr, ErrorCode::kInvalidArgument, "whisper",
           model_->path(), ": word timestamps need tokenizer.json");
  AF_CHECK(!o.word_timestamps || !c.alignment_heads.empty(), ErrorCode::kUnsupported, "whisper",
           model_->path(),
           ": word timestamps need \"alignment_heads\" in generation_config.json (re-convert "
           "with tools/convert_ct2_whisper.py, which writes CTranslate2's)");
  double last_speech_timestamp = 0.0;  // where the last window's words ended (word timestamps)
  std::vector<int32_t> init;
  int32_t language = -1;
  int64_t running_max_length = c.max_length;
  const int64_t total_frames = mel.total_frames();
  const auto init_tokens = [&](WhisperState& state) {
    if (!init.empty()) return;
    WhisperGenerateOptions prompt_options;
    prompt_options.language = o.language;
    prompt_options.task = o.task;
    prompt_options.timestamps = timestamps;
    init = whisper_init_tokens(*model_, state, c, prompt_options, &language);
  };
  // faster-whisper's windows without timestamps start every 30 s and, with no prompt and no
  // conditioning on earlier text, do not depend on each other: their first (greedy) attempts
  // are decoded side by side, up to batch_windows at a time, each as it would be alone. Not
  // with word timestamps: the next window then starts at the last word's end, and the words
  // are aligned through the window's own decoder state.
  const bool side_by_side = faster_whisper && !timestamps && !o.condition_on_prev_tokens &&
                            !o.word_timestamps && prompt_ids.empty() &&
                            o.temperatures.front() == 0.0 && search.beam_size == 1 &&
                            o.batch_windows > 1;
  std::deque<DecodedWindow> ahead;  // the windows from the loop's seek on, decoded
  const auto decode_ahead = [&](int64_t from) {
    std::vector<WhisperState> states;
    int64_t limit = o.batch_windows;
    for (int64_t at = from; at < total_frames && int64_t(states.size()) < limit;) {
      const int64_t frames = std::min(total_frames - at, mel.window_frames());
      ahead.push_back({model_->encode(mel.window(at, frames)), {}});
      states.push_back(model_->start(ahead.back().encoded));
      if (states.size() == 1) {
        const int64_t bytes =
            state_bytes(states[0]) + int64_t(sizeof(float) * ahead.back().encoded.size());
        limit = std::clamp<int64_t>(kSideBySideBytes / bytes, 1, limit);
      }
      at += frames;
    }
    init_tokens(states[0]);
    const int64_t max_length =
        ctranslate2_max_length(int64_t(init.size()), o.max_new_tokens, mc.max_target_positions);
    const size_t sot_position = init.size() > 1 ? 0 : init.size() - 1;
    std::vector<WhisperState*> pointers;
    for (WhisperState& st : states) pointers.push_back(&st);
    std::vector<WhisperWindow> windows =
        whisper_decode_windows(*model_, pointers, init, c, false, max_length, sot_position);
    for (size_t i = 0; i < windows.size(); ++i) {
      ahead[i].first = scored_attempt(std::move(windows[i]), 0.0, c, compression_of);
    }
  };
  for (int64_t seek = 0; seek < total_frames;) {
    const int64_t seek_num_frames = std::min(total_frames - seek, mel.window_frames());
    if (side_by_side && ahead.empty()) decode_ahead(seek);
    std::optional<DecodedWindow> done;
    if (!ahead.empty()) {
      done = std::move(ahead.front());
      ahead.pop_front();
    }
    const std::vector<float> encoded =
        done ? std::move(done->encoded) : model_->encode(mel.window(seek, seek_num_frames));
    WhisperState state = done ? WhisperState() : model_->start(encoded);
    init_tokens(state);
    std::vector<int32_t> input;
    if (o.condition_on_prev_tokens && !history.empty()) {
      input = previous_tokens(history, c.timestamp_begin(), c.prev_sot(), cut_off);
    } else {
      input = prompt_ids;
    }
    input.insert(input.end(), init.begin(), init.end());
    AF_CHECK(int64_t(input.size()) < mc.max_target_positions, ErrorCode::kOutOfRange, "whisper",
             "the prompt (", input.size(), " tokens) leaves no room in max_target_positions ",
             mc.max_target_positions);
    int64_t max_length = 0;
    if (faster_whisper) {
      max_length =
          ctranslate2_max_length(int64_t(input.size()), o.max_new_tokens, mc.max_target_positions);
    } else if (o.max_new_tokens > 0) {
      max_length = std::min(int64_t(input.size()) + o.max_new_tokens, mc.max_target_positions);
    } else {
      // transformers raises generation_config.max_length by the prompt at every window.
      const int64_t initial = std::min(int64_t(cut_off), int64_t(input.size()));
      running_max_length = std::min(running_max_length + initial, mc.max_target_positions);
      max_length = running_max_length;
    }
    // <|startoftranscript|> sits at input.size() - init.size() (WhisperNoSpeechDetection reads
    // the raw scores there; with only <|startoftranscript|> as init, the last position's).
    const size_t sot_position = init.size() > 1 ? input.size() - init.size() : input.size() - 1;
    const WindowRequest request{encoded,      input,  timestamps,    max_length,
                                sot_position, search, uint64_t(seek)};
    Attempt chosen =
        decode_with_fallback(*model_, state, c, request, o, compression_of,
                             done ? std::optional<Attempt>(std::move(done->first)) : std::nullopt);
    WhisperWindow& w = chosen.window;
    const double avg_logprob = chosen.avg_logprob, compression = chosen.compression;
    // transformers needs both thresholds; faster-whisper skips on no_speech_threshold alone
    // unless the average log-probability beats logprob_threshold.
    const bool skip = o.no_speech_threshold && w.no_speech_prob > *o.no_speech_threshold &&
                      (o.logprob_threshold ? avg_logprob < *o.logprob_threshold : faster_whisper);
    if (skip) {
      seek += seek_num_frames;
    } else {
      WindowSegments split =
          split_segments(w.tokens, ts_begin, seek, seek_num_frames, faster_whisper);
      if (o.word_timestamps) {
        const WhisperWordContext context{model_.get(),
                                         &state,
                                         &c,
                                         tokenizer_.get(),
                                         init,
                                         language_code(c, language),
                                         seek,
                                         seek_num_frames,
                                         o.prepend_punctuations,
                                         o.append_punctuations};
        split.advance = whisper_window_words(split.segments, context, w.tokens, split.advance,
                                             last_speech_timestamp);
      }
      for (WhisperSegment& s : split.segments) {
        if (faster_whisper && !has_content(s)) continue;
        s.id = int64_t(out.segments.size());
        s.seek = seek;
        s.avg_logprob = avg_logprob;
        s.temperature = chosen.temperature;
        s.compression_ratio = compression;
        s.no_speech_prob = w.no_speech_prob;
        history.push_back(s.tokens);
        out.tokens.insert(out.tokens.end(), s.tokens.begin(), s.tokens.end());
        out.segments.push_back(std::move(s));
      }
      seek += split.advance;
      // faster-whisper prompts with the initial prompt only until a window is kept.
      if (faster_whisper && !o.condition_on_prev_tokens) prompt_ids.clear();
    }
    // A window that needed a high temperature does not prompt the next (faster-whisper's
    // prompt_reset_on_temperature 0.5; transformers conditions only below 0.5).
    if (faster_whisper ? chosen.temperature > 0.5 : chosen.temperature >= 0.5) history.clear();
    if (progress && !progress({std::min(seek, total_frames), total_frames})) break;
  }
  out.language = language_code(c, language);
  if (tokenizer_) {
    for (WhisperSegment& s : out.segments) s.text = text_of(s.tokens);
    out.text = text_of(out.tokens);
  }
  return out;
}

}  // namespace af::models
