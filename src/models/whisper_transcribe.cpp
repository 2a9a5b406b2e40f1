// Whisper transcription: the features of short and long inputs, transformers' sequential
// long-form loop (WhisperGenerationMixin.generate with return_timestamps / return_segments) and
// the segments' text.
#include "af/models/whisper_transcribe.hpp"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>

#include "af/core/error.hpp"
#include "af/tokenizer/tokenizer.hpp"

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

// The log-mel input of the whole audio, window by window: transformers' extractor over all
// samples (truncation=False) for long inputs, or the 30 s padded chunk for short ones.
class MelSource {
 public:
  MelSource(modalities::AudioStream& stream, const modalities::LogMelExtractor& fe)
      : stream_(stream), fe_(fe) {
    scan();
  }

  bool short_form() const { return !short_mel_.empty(); }
  int64_t total_samples() const { return total_; }
  // Frames the decoding loop walks: 3000 for a padded short input, else total / hop.
  int64_t total_frames() const {
    return short_form() ? window_frames() : total_ / fe_.config().hop_length;
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
    {
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

  modalities::AudioStream& stream_;
  const modalities::LogMelExtractor& fe_;
  int64_t total_ = 0;
  double max_log10_ = 0.0;
  std::vector<float> short_mel_;  // [n_mels, 3000] of a short input
  std::unique_ptr<SampleWindow> samples_;
};

bool is_timestamp(int32_t id, int32_t ts_begin) { return ts_begin > 0 && id >= ts_begin; }

struct WindowSegments {
  std::vector<WhisperSegment> segments;
  int64_t advance = 0;  // frames to seek forward
};

// transformers' _retrieve_segment: split at each pair of consecutive timestamps; seek to the
// last closed timestamp unless the output ends on a single timestamp (then the whole window).
WindowSegments split_segments(const std::vector<int32_t>& seq, int32_t ts_begin, int64_t seek,
                              int64_t seek_num_frames) {
  const double time_offset = double(seek) * kTimePrecision / double(kInputStride);
  const auto ts = [&](size_t i) { return is_timestamp(seq[i], ts_begin); };
  const bool single_ending = seq.size() >= 2 && !ts(seq.size() - 2) && ts(seq.size() - 1);
  std::vector<size_t> slices;
  for (size_t i = 0; i + 1 < seq.size(); ++i) {
    if (ts(i) && ts(i + 1)) slices.push_back(i + 1);
  }
  WindowSegments out;
  if (!slices.empty()) {
    if (single_ending) {
      slices.push_back(seq.size());
    } else {
      slices.back() += 1;  // keep the closing pair's last timestamp in the last segment
    }
    size_t last = 0;
    for (size_t i = 0; i < slices.size(); ++i) {
      const bool is_last = i + 1 == slices.size();
      WhisperSegment s;
      s.tokens.assign(seq.begin() + std::ptrdiff_t(last), seq.begin() + std::ptrdiff_t(slices[i]));
      const int32_t end_token = s.tokens[s.tokens.size() - (!is_last || single_ending ? 1 : 2)];
      s.start = time_offset + double(s.tokens.front() - ts_begin) * kTimePrecision;
      s.end = time_offset + double(end_token - ts_begin) * kTimePrecision;
      out.segments.push_back(std::move(s));
      last = slices[i];
    }
    out.advance =
        single_ending ? seek_num_frames : int64_t(seq[last - 2] - ts_begin) * kInputStride;
    return out;
  }
  // No closed segment: the whole window is one segment, ending at its last timestamp if any.
  // transformers computes the window's length in float32: int(frames * 0.01 / 0.02).
  double last_pos = double(int64_t(float(seek_num_frames) * 0.01f / 0.02f));
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

}  // namespace

double whisper_compression_ratio(std::span<const int32_t> tokens, int64_t vocab_size) {
  const size_t width = size_t(std::log2(double(std::max<int64_t>(vocab_size, 1))) / 8) + 1;
  std::vector<uint8_t> bytes;
  bytes.reserve(tokens.size() * width);
  for (int32_t t : tokens) {
    for (size_t b = 0; b < width; ++b) bytes.push_back(uint8_t((uint64_t(uint32_t(t)) >> (8 * b))));
  }
  if (bytes.empty()) return 0.0;
  uLongf size = compressBound(uLong(bytes.size()));
  std::vector<uint8_t> packed(size);
  AF_CHECK(compress2(packed.data(), &size, bytes.data(), uLong(bytes.size()),
                     Z_DEFAULT_COMPRESSION) == Z_OK,
           ErrorCode::kInternal, "whisper", "zlib compress failed");
  return double(bytes.size()) / double(size);
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
  AF_CHECK(o.temperature == 0.0, ErrorCode::kUnsupported, "whisper", "temperature ", o.temperature,
           ": only greedy decoding (temperature 0) is implemented");
  std::vector<int32_t> prompt_ids = o.prompt_ids;
  if (prompt_ids.empty() && !trim_copy(o.initial_prompt).empty()) {
    AF_CHECK(tokenizer_ != nullptr, ErrorCode::kInvalidArgument, "whisper", model_->path(),
             ": a text prompt needs tokenizer.json");
    AF_CHECK(c.prev_sot() >= 0, ErrorCode::kUnsupported, "whisper", model_->path(),
             ": a prompt needs prev_sot_token_id in generation_config.json");
    prompt_ids = tokenizer_->encode(" " + trim_copy(o.initial_prompt), false);
    prompt_ids.insert(prompt_ids.begin(), c.prev_sot());
  }
  MelSource mel(audio, *features_);
  WhisperTranscription out;
  out.duration = double(mel.total_samples()) / double(features_->config().sampling_rate);
  const bool timestamps = o.timestamps || !mel.short_form();
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
  std::vector<int32_t> init;
  int32_t language = -1;
  int64_t running_max_length = c.max_length;
  const int64_t total_frames = mel.total_frames();
  for (int64_t seek = 0; seek < total_frames;) {
    const int64_t seek_num_frames = std::min(total_frames - seek, mel.window_frames());
    WhisperState state = model_->start(model_->encode(mel.window(seek, seek_num_frames)));
    if (init.empty()) {
      init = whisper_init_tokens(*model_, state, c, {o.language, o.task, timestamps, 0}, &language);
    }
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
    if (o.max_new_tokens > 0) {
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
    WhisperWindow w =
        whisper_decode_window(*model_, state, input, c, timestamps, max_length, sot_position);
    double avg_logprob = 0.0;
    for (float lp : w.token_logprobs) avg_logprob += lp;
    if (!w.token_logprobs.empty()) avg_logprob /= double(w.token_logprobs.size());
    const double compression = whisper_compression_ratio(w.tokens, mc.vocab_size);
    if (!w.tokens.empty() && w.tokens.back() == c.eos_token_id) w.tokens.pop_back();
    const bool skip = o.no_speech_threshold && o.logprob_threshold &&
                      avg_logprob < *o.logprob_threshold &&
                      w.no_speech_prob > *o.no_speech_threshold;
    if (skip) {
      seek += seek_num_frames;
    } else {
      WindowSegments split = split_segments(w.tokens, ts_begin, seek, seek_num_frames);
      for (WhisperSegment& s : split.segments) {
        s.id = int64_t(out.segments.size());
        s.seek = seek;
        s.avg_logprob = avg_logprob;
        s.compression_ratio = compression;
        s.no_speech_prob = w.no_speech_prob;
        history.push_back(s.tokens);
        out.tokens.insert(out.tokens.end(), s.tokens.begin(), s.tokens.end());
        out.segments.push_back(std::move(s));
      }
      seek += split.advance;
    }
    if (progress && !progress({std::min(seek, total_frames), total_frames})) break;
  }
  out.language = language_code(c, language);
  if (tokenizer_) {
    const auto text_of = [&](const std::vector<int32_t>& ids) {
      std::vector<int32_t> text_ids;
      for (int32_t id : ids) {
        if (id < c.eos_token_id || c.eos_token_id < 0) text_ids.push_back(id);
      }
      return tokenizer_->decode(text_ids, true);
    };
    for (WhisperSegment& s : out.segments) s.text = text_of(s.tokens);
    out.text = text_of(out.tokens);
  }
  return out;
}

}  // namespace af::models
