#pragma once
// Audio as the speech models see it: mono float32 samples at 16 kHz in [-1, 1]. Files are decoded
// through libsndfile (WAV with 16/24/32-bit PCM or float, FLAC, OGG Vorbis/Opus, MP3 where the
// library was built with mpg123), the channels averaged to mono (as sox -c 1 and librosa's
// to_mono do), and other rates resampled to 16 kHz with libsoxr (its "high quality" recipe).
// Integer PCM maps to float as x / 2^(bits - 1), as ffmpeg's f32le and Whisper's loader do.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace af::modalities {

struct AudioLimits {
  // Longest audio accepted, in seconds. Checked from the file header before any sample buffer is
  // allocated, and again while decoding (formats such as MP3 only estimate their length).
  double max_seconds = 3600.0;
  // Largest encoded file Audio::load reads.
  uint64_t max_file_bytes = 1ull << 30;
  // Source sample rates accepted (Hz); everything in between is resampled to 16 kHz.
  int min_sample_rate = 1000;
  int max_sample_rate = 768000;
  // Most channels accepted (each decoded frame holds one sample per channel).
  int max_channels = 64;
  // Largest |sample| accepted. Float files are nominally within [-1, 1]; values near FLT_MAX
  // (seen from fuzz_audio) would overflow to infinity in the resampler and the log-mel.
  float max_abs_sample = 1e4f;
};

class Audio {
 public:
  static constexpr int kSampleRate = 16000;

  Audio() = default;
  // Mono samples at `sample_rate` Hz, resampled to 16 kHz when the rate differs. Throws
  // af::Error naming `origin` for a NaN or infinite sample or a rate outside `limits`.
  static Audio from_samples(std::vector<float> mono, int sample_rate,
                            const std::string& origin = "<memory>", const AudioLimits& limits = {});
  // Reads and decodes a file; errors are af::Error "[audio] <path>: ...".
  static Audio load(const std::string& path, const AudioLimits& limits = {});
  // Decodes an encoded file held in memory; `origin` names it in error messages.
  static Audio decode(std::span<const uint8_t> bytes, const std::string& origin = "<memory>",
                      const AudioLimits& limits = {});

  const std::vector<float>& samples() const { return samples_; }  // [n] at 16 kHz
  int sample_rate() const { return kSampleRate; }
  double seconds() const { return double(samples_.size()) / kSampleRate; }
  // The source file's rate and channel count (before down-mixing and resampling).
  int source_rate() const { return source_rate_; }
  int source_channels() const { return source_channels_; }
  // SHA-256 (lower-case hex) of the 16 kHz samples: equal for the same sound whatever container
  // carried it, so it can key caches of encoder outputs.
  const std::string& hash() const { return hash_; }

 private:
  std::vector<float> samples_;
  int source_rate_ = kSampleRate;
  int source_channels_ = 1;
  std::string hash_;
};

// Audio decoded a block at a time, for inputs too long to hold (a 3-hour file is 690 MB of 16 kHz
// floats): the same decoding, down-mixing, checks and resampling as Audio::load, but read(out)
// returns the next 16 kHz samples and rewind() starts again from the first, so a caller can make
// two passes (Whisper's log-mel needs the whole input's maximum before its first window).
class AudioStream {
 public:
  virtual ~AudioStream() = default;
  // A file read from disk as it is decoded (only libsndfile's buffers and one block in memory).
  static std::unique_ptr<AudioStream> open(const std::string& path, const AudioLimits& limits = {});
  // An encoded file in memory; `bytes` must outlive the stream.
  static std::unique_ptr<AudioStream> decode(std::span<const uint8_t> bytes,
                                             const std::string& origin = "<memory>",
                                             const AudioLimits& limits = {});
  // Samples already at 16 kHz (not copied: they must outlive the stream).
  static std::unique_ptr<AudioStream> from_samples(std::span<const float> samples_16k,
                                                   const std::string& origin = "<memory>");

  // Fills `out` with the next samples; returns how many (fewer only at the end, 0 after it).
  // Throws af::Error naming the origin for undecodable data, NaN samples or the duration limit.
  virtual size_t read(std::span<float> out) = 0;
  // Back to the first sample.
  virtual void rewind() = 0;
  virtual const std::string& origin() const = 0;
};

// Resamples mono float samples from `in_rate` to `out_rate` Hz with libsoxr (SOXR_HQ); the output
// has round(n * out_rate / in_rate) samples. Equal rates return the input unchanged.
std::vector<float> resample(std::span<const float> samples, int in_rate, int out_rate);

}  // namespace af::modalities
