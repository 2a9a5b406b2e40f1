// Audio: decoding through libsndfile from memory, down-mixing, the limits, resampling through
// libsoxr and the content hash.
#include "af/modalities/audio.hpp"

#include <sndfile.h>
#include <soxr.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <span>

#include "af/core/error.hpp"
#include "sha256.hpp"

namespace af::modalities {
namespace {

[[noreturn]] void fail_audio(const std::string& origin, const std::string& message) {
  fail(ErrorCode::kFormat, "audio", origin, ": ", message);
}

// NaN, infinite and absurdly large samples (AudioLimits::max_abs_sample) are refused.
void check_sample(float v, uint64_t index, int channel, const std::string& origin,
                  const AudioLimits& limits) {
  if (std::isfinite(v) && std::abs(v) <= limits.max_abs_sample) return;
  const std::string where = "sample " + std::to_string(index) +
                            (channel >= 0 ? " (channel " + std::to_string(channel) + ")" : "");
  if (!std::isfinite(v)) fail_audio(origin, where + " is NaN or infinite");
  fail(ErrorCode::kOutOfRange, "audio", origin, ": ", where, " = ", v, " exceeds +-",
       limits.max_abs_sample, " (AudioLimits::max_abs_sample)");
}

// libsndfile reads through these callbacks, so bytes from a socket or a fuzzer need no temp file.
struct MemoryReader {
  const uint8_t* data;
  sf_count_t size;
  sf_count_t pos = 0;
};

sf_count_t mem_length(void* user) { return static_cast<MemoryReader*>(user)->size; }

sf_count_t mem_seek(sf_count_t offset, int whence, void* user) {
  auto* m = static_cast<MemoryReader*>(user);
  sf_count_t base = whence == SEEK_CUR ? m->pos : whence == SEEK_END ? m->size : 0;
  // Out-of-range seeks are clamped rather than refused: libsndfile probes past the end of
  // truncated files and treats the short read that follows as the error.
  if (offset > 0 && base > m->size - offset) {
    m->pos = m->size;
  } else {
    m->pos = std::max<sf_count_t>(0, base + offset);
  }
  return m->pos;
}

sf_count_t mem_read(void* ptr, sf_count_t count, void* user) {
  auto* m = static_cast<MemoryReader*>(user);
  if (count <= 0 || m->pos >= m->size) return 0;
  const sf_count_t n = std::min(count, m->size - m->pos);
  std::memcpy(ptr, m->data + m->pos, static_cast<size_t>(n));
  m->pos += n;
  return n;
}

sf_count_t mem_write(const void*, sf_count_t, void*) { return 0; }
sf_count_t mem_tell(void* user) { return static_cast<MemoryReader*>(user)->pos; }

struct SndFileCloser {
  void operator()(SNDFILE* f) const { sf_close(f); }
};

void check_rate(int rate, const std::string& origin, const AudioLimits& limits) {
  if (rate < limits.min_sample_rate || rate > limits.max_sample_rate) {
    fail(ErrorCode::kOutOfRange, "audio", origin, ": sample rate ", rate,
         " Hz is outside the accepted range ", limits.min_sample_rate, "..", limits.max_sample_rate,
         " Hz (AudioLimits::min_sample_rate/max_sample_rate)");
  }
}

uint64_t max_frames(int rate, const AudioLimits& limits) {
  return static_cast<uint64_t>(std::max(0.0, limits.max_seconds) * rate);
}

[[noreturn]] void fail_too_long(const std::string& origin, uint64_t frames, int rate,
                                const AudioLimits& limits) {
  fail(ErrorCode::kOutOfRange, "audio", origin, ": ", double(frames) / rate,
       " s or more exceeds the limit of ", limits.max_seconds, " s (AudioLimits::max_seconds)");
}

// Resamples a stream chunk by chunk through libsoxr's streaming API, so decoding a long file at a
// high rate never holds its source-rate samples: memory stays near the 16 kHz output (a 3 h,
// 192 kHz file would otherwise need 8 GB of floats before resampling).
class StreamResampler {
 public:
  StreamResampler(int in_rate, int out_rate) : ratio_(double(out_rate) / double(in_rate)) {
    if (in_rate == out_rate) return;
    const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
    const soxr_quality_spec_t quality = soxr_quality_spec(SOXR_HQ, 0);
    soxr_error_t error = nullptr;
    soxr_ = soxr_create(in_rate, out_rate, 1, &error, &io, &quality, nullptr);
    AF_CHECK(!error && soxr_, ErrorCode::kInternal, "audio",
             "libsoxr: ", error ? error : "cannot create a resampler");
  }
  ~StreamResampler() {
    if (soxr_) soxr_delete(soxr_);
  }
  StreamResampler(const StreamResampler&) = delete;
  StreamResampler& operator=(const StreamResampler&) = delete;

  void push(const float* x, size_t n, std::vector<float>& out) {
    consumed_ += n;
    if (!soxr_) {
      out.insert(out.end(), x, x + n);
    } else {
      run(x, n, out);
    }
  }
  // The filter's tail, for callers that count the output themselves (AudioStream).
  void flush(std::vector<float>& out) {
    if (soxr_) run(nullptr, 0, out);
  }
  // How many output samples the input so far gives in all: round(n * out_rate / in_rate).
  uint64_t expected() const {
    return soxr_ ? uint64_t(std::llround(double(consumed_) * ratio_)) : consumed_;
  }
  // Flushes the filter's tail; the total is then round(n * out_rate / in_rate) samples, as
  // resample() gives for the same input.
  void finish(std::vector<float>& out) {
    if (!soxr_) return;
    run(nullptr, 0, out);
    out.resize(std::min(out.size(), static_cast<size_t>(std::llround(double(consumed_) * ratio_))));
  }

 private:
  void run(const float* x, size_t n, std::vector<float>& out) {
    float buffer[4096];
    size_t offset = 0;
    for (;;) {
      size_t used = 0, made = 0;
      const soxr_error_t error = soxr_process(soxr_, x ? x + offset : nullptr, x ? n - offset : 0,
                                              &used, buffer, std::size(buffer), &made);
      AF_CHECK(!error, ErrorCode::kInternal, "audio", "libsoxr: ", error);
      offset += used;
      out.insert(out.end(), buffer, buffer + made);
      if (made == std::size(buffer)) continue;  // more output may be waiting
      if (!x || offset >= n) break;
    }
  }

  soxr_t soxr_ = nullptr;
  double ratio_;
  uint64_t consumed_ = 0;
};

// Reads every frame, averages the channels of each into one mono sample and resamples the stream
// to 16 kHz; refuses NaN and infinite samples (float files can hold them) and stops at the
// duration limit.
std::vector<float> read_mono_16k(SNDFILE* file, const SF_INFO& info, const std::string& origin,
                                 const AudioLimits& limits) {
  const uint64_t limit = max_frames(info.samplerate, limits);
  constexpr sf_count_t kChunkFrames = 4096;
  std::vector<float> chunk(static_cast<size_t>(kChunkFrames * info.channels));
  std::vector<float> mono(static_cast<size_t>(kChunkFrames));
  std::vector<float> out;
  if (info.frames > 0) {
    out.reserve(static_cast<size_t>(double(std::min<uint64_t>(info.frames, limit)) *
                                    Audio::kSampleRate / info.samplerate) +
                1);
  }
  StreamResampler resampler(info.samplerate, Audio::kSampleRate);
  uint64_t frames = 0;
  for (;;) {
    const sf_count_t got = sf_readf_float(file, chunk.data(), kChunkFrames);
    if (got <= 0) break;
    if (frames + uint64_t(got) > limit)
      fail_too_long(origin, frames + got, info.samplerate, limits);
    for (sf_count_t f = 0; f < got; ++f) {
      const float* frame = chunk.data() + f * info.channels;
      float sum = 0.0f;
      for (int c = 0; c < info.channels; ++c) {
        check_sample(frame[c], frames + uint64_t(f), c, origin, limits);
        sum += frame[c];
      }
      mono[size_t(f)] = info.channels == 1 ? sum : sum / float(info.channels);
    }
    resampler.push(mono.data(), size_t(got), out);
    frames += uint64_t(got);
  }
  if (sf_error(file) != SF_ERR_NO_ERROR) {
    fail_audio(origin, std::string("decoding failed: ") + sf_strerror(file));
  }
  if (frames == 0) fail_audio(origin, "holds no samples");
  resampler.finish(out);
  if (out.empty()) {
    fail_audio(origin, "too short: " + std::to_string(frames) + " samples at " +
                           std::to_string(info.samplerate) + " Hz give no 16 kHz sample");
  }
  return out;
}

std::string sha256_hex(const std::vector<float>& samples) {
  return detail::sha256_hex(
      std::span(reinterpret_cast<const uint8_t*>(samples.data()), samples.size() * sizeof(float)));
}

}  // namespace

std::vector<float> resample(std::span<const float> samples, int in_rate, int out_rate) {
  AF_CHECK(in_rate > 0 && out_rate > 0, ErrorCode::kInvalidArgument, "audio",
           "resample: rates must be positive (", in_rate, " -> ", out_rate, ")");
  if (in_rate == out_rate || samples.empty()) return {samples.begin(), samples.end()};
  // At least one output sample: libsoxr dereferences a null output buffer (found by fuzz_audio
  // with a 1-frame 22.05 kHz file).
  const size_t out_len =
      std::max<size_t>(1, static_cast<size_t>(std::llround(double(samples.size()) *
                                                           double(out_rate) / double(in_rate))));
  std::vector<float> out(out_len);
  size_t done = 0;
  const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
  const soxr_quality_spec_t quality = soxr_quality_spec(SOXR_HQ, 0);
  const soxr_error_t error =
      soxr_oneshot(in_rate, out_rate, 1, samples.data(), samples.size(), nullptr, out.data(),
                   out.size(), &done, &io, &quality, nullptr);
  AF_CHECK(!error, ErrorCode::kInternal, "audio", "libsoxr: ", error);
  out.resize(done);
  return out;
}

Audio Audio::from_samples(std::vector<float> mono, int sample_rate, const std::string& origin,
                          const AudioLimits& limits) {
  check_rate(sample_rate, origin, limits);
  if (mono.empty()) fail_audio(origin, "holds no samples");
  if (mono.size() > max_frames(sample_rate, limits)) {
    fail_too_long(origin, mono.size(), sample_rate, limits);
  }
  for (size_t i = 0; i < mono.size(); ++i) check_sample(mono[i], i, -1, origin, limits);
  Audio audio;
  audio.source_rate_ = sample_rate;
  audio.samples_ = resample(mono, sample_rate, kSampleRate);
  if (audio.samples_.empty()) {
    fail_audio(origin, "too short: " + std::to_string(mono.size()) + " samples at " +
                           std::to_string(sample_rate) + " Hz give no 16 kHz sample");
  }
  audio.hash_ = sha256_hex(audio.samples_);
  return audio;
}

Audio Audio::decode(std::span<const uint8_t> bytes, const std::string& origin,
                    const AudioLimits& limits) {
  if (bytes.empty()) fail_audio(origin, "empty file");
  MemoryReader reader{bytes.data(), static_cast<sf_count_t>(bytes.size())};
  SF_VIRTUAL_IO io{mem_length, mem_seek, mem_read, mem_write, mem_tell};
  SF_INFO info{};
  std::unique_ptr<SNDFILE, SndFileCloser> file(sf_open_virtual(&io, SFM_READ, &info, &reader));
  if (!file) {
    fail_audio(origin, std::string("not audio in a supported format (WAV, FLAC, OGG, MP3): ") +
                           sf_strerror(nullptr));
  }
  if (info.channels < 1 || info.channels > limits.max_channels) {
    fail(ErrorCode::kOutOfRange, "audio", origin, ": ", info.channels, " channels is outside 1..",
         limits.max_channels, " (AudioLimits::max_channels)");
  }
  check_rate(info.samplerate, origin, limits);
  if (info.frames > 0 && uint64_t(info.frames) > max_frames(info.samplerate, limits)) {
    fail_too_long(origin, uint64_t(info.frames), info.samplerate, limits);
  }
  Audio audio;
  audio.samples_ = read_mono_16k(file.get(), info, origin, limits);
  audio.source_rate_ = info.samplerate;
  audio.source_channels_ = info.channels;
  audio.hash_ = sha256_hex(audio.samples_);
  return audio;
}

Audio Audio::load(const std::string& path, const AudioLimits& limits) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail_audio(path, "is a directory");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail(ErrorCode::kIo, "audio", path, ": cannot open");
  const std::streamoff size = in.tellg();
  if (size < 0) fail(ErrorCode::kIo, "audio", path, ": cannot read");
  if (uint64_t(size) > limits.max_file_bytes) {
    fail(ErrorCode::kOutOfRange, "audio", path, ": ", size, " bytes exceeds the limit of ",
         limits.max_file_bytes, " (AudioLimits::max_file_bytes)");
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.seekg(0);
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size)) {
    fail(ErrorCode::kIo, "audio", path, ": read failed");
  }
  return decode(bytes, path, limits);
}

namespace {

// libsndfile decoding a block at a time, from a path (sf_open reads the file as it goes) or from
// bytes in memory; the 16 kHz output waits in pending_ until read() hands it out.
class SndAudioStream final : public AudioStream {
 public:
  SndAudioStream(std::string path, std::span<const uint8_t> bytes, std::string origin,
                 const AudioLimits& limits)
      : path_(std::move(path)), bytes_(bytes), origin_(std::move(origin)), limits_(limits) {
    reopen();
  }

  size_t read(std::span<float> out) override {
    while (pending_.size() < out.size() && !done_) decode_block();
    const size_t n = std::min(out.size(), pending_.size());
    std::copy_n(pending_.begin(), n, out.begin());
    // Drop what was handed out, so pending_ never holds more than about one block.
    pending_.erase(pending_.begin(), pending_.begin() + std::ptrdiff_t(n));
    return n;
  }

  void rewind() override { reopen(); }
  const std::string& origin() const override { return origin_; }

 private:
  void reopen() {
    file_.reset();
    reader_ = MemoryReader{bytes_.data(), static_cast<sf_count_t>(bytes_.size())};
    info_ = SF_INFO{};
    if (path_.empty()) {
      SF_VIRTUAL_IO io{mem_length, mem_seek, mem_read, mem_write, mem_tell};
      file_.reset(sf_open_virtual(&io, SFM_READ, &info_, &reader_));
    } else {
      file_.reset(sf_open(path_.c_str(), SFM_READ, &info_));
    }
    if (!file_) {
      fail_audio(origin_, std::string("not audio in a supported format (WAV, FLAC, OGG, MP3): ") +
                              sf_strerror(nullptr));
    }
    if (info_.channels < 1 || info_.channels > limits_.max_channels) {
      fail(ErrorCode::kOutOfRange, "audio", origin_, ": ", info_.channels,
           " channels is outside 1..", limits_.max_channels, " (AudioLimits::max_channels)");
    }
    check_rate(info_.samplerate, origin_, limits_);
    if (info_.frames > 0 && uint64_t(info_.frames) > max_frames(info_.samplerate, limits_)) {
      fail_too_long(origin_, uint64_t(info_.frames), info_.samplerate, limits_);
    }
    resampler_ = std::make_unique<StreamResampler>(info_.samplerate, Audio::kSampleRate);
    chunk_.assign(size_t(kChunkFrames) * size_t(info_.channels), 0.0f);
    pending_.clear();
    frames_ = produced_ = 0;
    done_ = false;
  }

  void decode_block() {
    const sf_count_t got = sf_readf_float(file_.get(), chunk_.data(), kChunkFrames);
    const size_t before = pending_.size();
    if (got <= 0) {
      if (sf_error(file_.get()) != SF_ERR_NO_ERROR) {
        fail_audio(origin_, std::string("decoding failed: ") + sf_strerror(file_.get()));
      }
      if (frames_ == 0) fail_audio(origin_, "holds no samples");
      resampler_->flush(pending_);
      // Exactly round(n * 16000 / rate) samples in all, as Audio::decode gives.
      const uint64_t keep = resampler_->expected() - std::min(resampler_->expected(), produced_);
      pending_.resize(before + std::min<size_t>(pending_.size() - before, size_t(keep)));
      done_ = true;
      if (produced_ + (pending_.size() - before) == 0) {
        fail_audio(origin_, "too short: " + std::to_string(frames_) + " samples at " +
                                std::to_string(info_.samplerate) + " Hz give no 16 kHz sample");
      }
    } else {
      if (frames_ + uint64_t(got) > max_frames(info_.samplerate, limits_)) {
        fail_too_long(origin_, frames_ + uint64_t(got), info_.samplerate, limits_);
      }
      std::vector<float>& mono = mono_;
      mono.resize(size_t(got));
      for (sf_count_t f = 0; f < got; ++f) {
        const float* frame = chunk_.data() + f * info_.channels;
        float sum = 0.0f;
        for (int c = 0; c < info_.channels; ++c) {
          check_sample(frame[c], frames_ + uint64_t(f), c, origin_, limits_);
          sum += frame[c];
        }
        mono[size_t(f)] = info_.channels == 1 ? sum : sum / float(info_.channels);
      }
      resampler_->push(mono.data(), mono.size(), pending_);
      frames_ += uint64_t(got);
    }
    produced_ += pending_.size() - before;
  }

  static constexpr sf_count_t kChunkFrames = 4096;
  std::string path_;
  std::span<const uint8_t> bytes_;
  std::string origin_;
  AudioLimits limits_;
  MemoryReader reader_{nullptr, 0};
  SF_INFO info_{};
  std::unique_ptr<SNDFILE, SndFileCloser> file_;
  std::unique_ptr<StreamResampler> resampler_;
  std::vector<float> chunk_, mono_;     // one block: [kChunkFrames, channels], [kChunkFrames]
  std::vector<float> pending_;          // decoded 16 kHz samples not yet read
  uint64_t frames_ = 0, produced_ = 0;  // source frames decoded; 16 kHz samples made
  bool done_ = false;
};

class SampleStream final : public AudioStream {
 public:
  SampleStream(std::span<const float> samples, std::string origin)
      : samples_(samples), origin_(std::move(origin)) {
    if (samples_.empty()) fail_audio(origin_, "holds no samples");
  }
  size_t read(std::span<float> out) override {
    const size_t n = std::min(out.size(), samples_.size() - pos_);
    std::copy_n(samples_.begin() + std::ptrdiff_t(pos_), n, out.begin());
    pos_ += n;
    return n;
  }
  void rewind() override { pos_ = 0; }
  const std::string& origin() const override { return origin_; }

 private:
  std::span<const float> samples_;
  std::string origin_;
  size_t pos_ = 0;
};

}  // namespace

std::unique_ptr<AudioStream> AudioStream::open(const std::string& path, const AudioLimits& limits) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail_audio(path, "is a directory");
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) fail(ErrorCode::kIo, "audio", path, ": cannot open (", ec.message(), ")");
  if (size == 0) fail_audio(path, "empty file");
  if (size > limits.max_file_bytes) {
    fail(ErrorCode::kOutOfRange, "audio", path, ": ", size, " bytes exceeds the limit of ",
         limits.max_file_bytes, " (AudioLimits::max_file_bytes)");
  }
  return std::make_unique<SndAudioStream>(path, std::span<const uint8_t>{}, path, limits);
}

std::unique_ptr<AudioStream> AudioStream::decode(std::span<const uint8_t> bytes,
                                                 const std::string& origin,
                                                 const AudioLimits& limits) {
  if (bytes.empty()) fail_audio(origin, "empty file");
  return std::make_unique<SndAudioStream>("", bytes, origin, limits);
}

std::unique_ptr<AudioStream> AudioStream::from_samples(std::span<const float> samples_16k,
                                                       const std::string& origin) {
  return std::make_unique<SampleStream>(samples_16k, origin);
}

}  // namespace af::modalities
