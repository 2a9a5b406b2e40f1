#pragma once
// Whisper's input features exactly as transformers' WhisperFeatureExtractor computes them: the
// audio padded with zeros (or truncated) to chunk_length seconds, a centred STFT (periodic Hann
// window of n_fft samples, reflect padding, hop hop_length; FFTW), the power spectrum through the
// Slaney-normalised Slaney-scale mel filter bank (0..8 kHz), log10 of max(x, 1e-10), the
// dynamic-range floor max - 8, then (x + 4) / 4. The last STFT frame is dropped, as transformers
// drops it. Computed in float64 and rounded to float32 once at the end.
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace af::modalities {

// The keys of preprocessor_config.json the features depend on (transformers' defaults).
struct LogMelConfig {
  int64_t feature_size = 80;  // n_mels: 80 (Whisper up to large-v2) or 128 (large-v3)
  int64_t sampling_rate = 16000;
  int64_t hop_length = 160;
  int64_t chunk_length = 30;  // seconds the input is padded/truncated to
  int64_t n_fft = 400;
  double padding_value = 0.0;

  // Reads the keys above from a WhisperFeatureExtractor config; errors name `origin` and the
  // key. Values outside sane ranges (n_fft 2..65536, feature_size 1..512, hop 1..n_fft,
  // chunk_length 1..3600, sampling_rate 16000) are refused.
  static LogMelConfig from_json(const nlohmann::json& json, const std::string& origin);
  // From an HF folder holding preprocessor_config.json, or that file itself.
  static LogMelConfig load(const std::string& path);

  int64_t n_samples() const { return chunk_length * sampling_rate; }
  int64_t n_frames() const { return n_samples() / hop_length; }
};

struct LogMel {
  int64_t n_mels = 0;
  int64_t n_frames = 0;
  std::vector<float> data;  // [n_mels, n_frames], row-major (the model's input_features[0])
};

class LogMelExtractor {
 public:
  explicit LogMelExtractor(const LogMelConfig& config);
  ~LogMelExtractor();
  LogMelExtractor(const LogMelExtractor&) = delete;
  LogMelExtractor& operator=(const LogMelExtractor&) = delete;

  const LogMelConfig& config() const { return config_; }
  // The mel filter bank, [n_fft / 2 + 1, n_mels] row-major (transformers' mel_filters).
  const std::vector<double>& filters() const { return filters_; }

  // Features of 16 kHz mono samples: the first chunk_length seconds, zero-padded when shorter.
  // Thread-safe (each call uses its own FFT buffers).
  LogMel compute(std::span<const float> samples) const;

  // Long-form input (transformers' extractor with truncation=False, padding="longest"): a signal
  // of `total` samples has total / hop_length frames, frame t centred on sample t * hop_length
  // with reflect padding only at the signal's two ends. log10_frames returns log10(max(mel,
  // 1e-10)) of frames [first, first + count) as [n_mels, count]; `samples` holds the signal's
  // samples [offset, offset + samples.size()) and must cover every sample those frames read
  // (frame_span tells which). finish() then applies the dynamic-range floor of the whole signal
  // (max_log10: the largest value over all its frames) and the (x + 4) / 4 scaling.
  std::vector<double> log10_frames(std::span<const float> samples, int64_t offset, int64_t total,
                                   int64_t first, int64_t count) const;
  // The samples [begin, end) that frames [first, first + count) of a `total`-sample signal read.
  std::pair<int64_t, int64_t> frame_span(int64_t total, int64_t first, int64_t count) const;
  static std::vector<float> finish(std::span<const double> log10_mel, double max_log10);

 private:
  LogMelConfig config_;
  std::vector<double> window_;   // [n_fft], periodic Hann
  std::vector<double> filters_;  // [n_fft / 2 + 1, n_mels]
  std::vector<int64_t> bands_;   // [n_mels, 2]: the bins [first, last) where a filter is non-zero
  void* plan_ = nullptr;         // fftw_plan (r2c, n_fft), executed with new-array execution
};

// transformers' mel_filter_bank(num_frequency_bins, num_mel_filters, min_frequency,
// max_frequency, sampling_rate, norm="slaney", mel_scale="slaney"): [n_freq, n_mels].
std::vector<double> slaney_mel_filters(int64_t n_freq, int64_t n_mels, double min_hz, double max_hz,
                                       int64_t sampling_rate);

}  // namespace af::modalities
