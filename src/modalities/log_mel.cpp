// WhisperFeatureExtractor: config parsing, the Slaney mel filter bank and the log-mel STFT.
#include "af/modalities/log_mel.hpp"

#include <fftw3.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <numbers>

#include "af/core/error.hpp"
#include "af/io/model_files.hpp"

namespace af::modalities {
namespace {

int64_t int_key(const nlohmann::json& json, const char* key, int64_t fallback, int64_t lo,
                int64_t hi, const std::string& origin) {
  if (!json.contains(key) || json[key].is_null()) return fallback;
  const nlohmann::json& v = json[key];
  AF_CHECK(v.is_number_integer(), ErrorCode::kFormat, "log_mel", origin, ": \"", key,
           "\" must be an integer");
  const int64_t value = v.get<int64_t>();
  AF_CHECK(value >= lo && value <= hi, ErrorCode::kFormat, "log_mel", origin, ": \"", key,
           "\" = ", value, " is outside ", lo, "..", hi);
  return value;
}

// The planner of FFTW is not thread-safe (its execute functions are).
std::mutex& fftw_planner_mutex() {
  static std::mutex mutex;
  return mutex;
}

struct FftwFree {
  void operator()(void* p) const { fftw_free(p); }
};

// Slaney's mel scale (librosa's default, transformers' mel_scale="slaney"): linear below 1 kHz,
// logarithmic above.
constexpr double kMinLogHz = 1000.0;
constexpr double kMinLogMel = 15.0;

double hz_to_mel(double hz) {
  const double logstep = 27.0 / std::log(6.4);
  return hz >= kMinLogHz ? kMinLogMel + std::log(hz / kMinLogHz) * logstep : 3.0 * hz / 200.0;
}

double mel_to_hz(double mel) {
  const double logstep = std::log(6.4) / 27.0;
  return mel >= kMinLogMel ? kMinLogHz * std::exp(logstep * (mel - kMinLogMel)) : 200.0 * mel / 3.0;
}

// numpy.linspace(start, stop, n)[i], with its formula (step * i + start, last = stop).
double linspace(double start, double stop, int64_t n, int64_t i) {
  if (i == n - 1) return stop;
  return start + double(i) * ((stop - start) / double(n - 1));
}

}  // namespace

LogMelConfig LogMelConfig::from_json(const nlohmann::json& json, const std::string& origin) {
  AF_CHECK(json.is_object(), ErrorCode::kFormat, "log_mel", origin, ": not a JSON object");
  if (json.contains("feature_extractor_type") && json["feature_extractor_type"].is_string()) {
    const std::string type = json["feature_extractor_type"].get<std::string>();
    AF_CHECK(type == "WhisperFeatureExtractor", ErrorCode::kUnsupported, "log_mel", origin,
             ": feature_extractor_type \"", type, "\" is not supported (WhisperFeatureExtractor)");
  }
  LogMelConfig c;
  c.feature_size = int_key(json, "feature_size", c.feature_size, 1, 512, origin);
  c.sampling_rate = int_key(json, "sampling_rate", c.sampling_rate, 16000, 16000, origin);
  c.n_fft = int_key(json, "n_fft", c.n_fft, 2, 65536, origin);
  c.hop_length = int_key(json, "hop_length", c.hop_length, 1, c.n_fft, origin);
  c.chunk_length = int_key(json, "chunk_length", c.chunk_length, 1, 3600, origin);
  if (json.contains("padding_value") && json["padding_value"].is_number()) {
    c.padding_value = json["padding_value"].get<double>();
  }
  // Dither adds random noise: features could not be reproduced, so it is refused, not ignored.
  if (json.contains("dither") && json["dither"].is_number()) {
    AF_CHECK(json["dither"].get<double>() == 0.0, ErrorCode::kUnsupported, "log_mel", origin,
             ": \"dither\" must be 0 (random noise is not supported)");
  }
  AF_CHECK(c.n_samples() > c.n_fft, ErrorCode::kFormat, "log_mel", origin, ": chunk of ",
           c.n_samples(), " samples is shorter than n_fft ", c.n_fft);
  return c;
}

LogMelConfig LogMelConfig::load(const std::string& path) {
  std::filesystem::path file = path;
  if (std::filesystem::is_directory(file)) file /= "preprocessor_config.json";
  return from_json(io::read_json_file(file.string()), file.string());
}

std::vector<double> slaney_mel_filters(int64_t n_freq, int64_t n_mels, double min_hz, double max_hz,
                                       int64_t sampling_rate) {
  const double mel_min = hz_to_mel(min_hz), mel_max = hz_to_mel(max_hz);
  std::vector<double> filter_hz(static_cast<size_t>(n_mels + 2));
  for (int64_t i = 0; i < n_mels + 2; ++i) {
    filter_hz[i] = mel_to_hz(linspace(mel_min, mel_max, n_mels + 2, i));
  }
  std::vector<double> filters(static_cast<size_t>(n_freq * n_mels));
  for (int64_t f = 0; f < n_freq; ++f) {
    const double fft_hz = linspace(0.0, double(sampling_rate / 2), n_freq, f);
    for (int64_t m = 0; m < n_mels; ++m) {
      // Triangle rising from filter_hz[m] to filter_hz[m + 1], falling to filter_hz[m + 2].
      const double down = -(filter_hz[m] - fft_hz) / (filter_hz[m + 1] - filter_hz[m]);
      const double up = (filter_hz[m + 2] - fft_hz) / (filter_hz[m + 2] - filter_hz[m + 1]);
      const double enorm = 2.0 / (filter_hz[m + 2] - filter_hz[m]);
      filters[f * n_mels + m] = std::max(0.0, std::min(down, up)) * enorm;
    }
  }
  return filters;
}

LogMelExtractor::LogMelExtractor(const LogMelConfig& config) : config_(config) {
  const int64_t n = config_.n_fft;
  window_.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    // Periodic Hann (torch.hann_window, transformers' window_function(periodic=True)).
    window_[i] = 0.5 - 0.5 * std::cos(2.0 * std::numbers::pi * double(i) / double(n));
  }
  filters_ =
      slaney_mel_filters(n / 2 + 1, config_.feature_size, 0.0, 8000.0, config_.sampling_rate);
  // Each triangle covers a few bins: skipping the zeros outside leaves every sum unchanged.
  bands_.assign(static_cast<size_t>(2 * config_.feature_size), 0);
  for (int64_t m = 0; m < config_.feature_size; ++m) {
    int64_t first = n / 2 + 1, last = 0;
    for (int64_t f = 0; f <= n / 2; ++f) {
      if (filters_[f * config_.feature_size + m] != 0.0) {
        first = std::min(first, f);
        last = f + 1;
      }
    }
    bands_[2 * m] = std::min(first, last);
    bands_[2 * m + 1] = last;
  }
  std::unique_ptr<double, FftwFree> in(fftw_alloc_real(static_cast<size_t>(n)));
  std::unique_ptr<fftw_complex, FftwFree> out(fftw_alloc_complex(static_cast<size_t>(n / 2 + 1)));
  std::lock_guard lock(fftw_planner_mutex());
  plan_ = fftw_plan_dft_r2c_1d(static_cast<int>(n), in.get(), out.get(), FFTW_ESTIMATE);
  AF_CHECK(plan_ != nullptr, ErrorCode::kInternal, "log_mel", "FFTW could not plan n_fft ", n);
}

LogMelExtractor::~LogMelExtractor() {
  std::lock_guard lock(fftw_planner_mutex());
  fftw_destroy_plan(static_cast<fftw_plan>(plan_));
}

LogMel LogMelExtractor::compute(std::span<const float> samples) const {
  const int64_t n_fft = config_.n_fft, hop = config_.hop_length, n_mels = config_.feature_size;
  const int64_t n_freq = n_fft / 2 + 1, n_samples = config_.n_samples();
  const int64_t pad = n_fft / 2;
  // The padded/truncated chunk with torch.stft's centre reflect padding on both sides.
  std::vector<double> x(static_cast<size_t>(n_samples + 2 * pad), config_.padding_value);
  const int64_t n_in = std::min<int64_t>(n_samples, static_cast<int64_t>(samples.size()));
  for (int64_t i = 0; i < n_in; ++i) x[pad + i] = samples[i];
  for (int64_t i = 0; i < pad; ++i) {
    x[pad - 1 - i] = x[pad + 1 + i];
    x[pad + n_samples + i] = x[pad + n_samples - 2 - i];
  }

  LogMel out;
  out.n_mels = n_mels;
  out.n_frames = config_.n_frames();
  std::vector<double> mel(static_cast<size_t>(n_mels * out.n_frames));
  std::unique_ptr<double, FftwFree> frame(fftw_alloc_real(static_cast<size_t>(n_fft)));
  std::unique_ptr<fftw_complex, FftwFree> spec(fftw_alloc_complex(static_cast<size_t>(n_freq)));
  std::vector<double> power(static_cast<size_t>(n_freq));
  double max_log = -std::numeric_limits<double>::infinity();
  for (int64_t t = 0; t < out.n_frames; ++t) {
    const double* src = x.data() + t * hop;
    for (int64_t i = 0; i < n_fft; ++i) frame.get()[i] = src[i] * window_[i];
    fftw_execute_dft_r2c(static_cast<fftw_plan>(plan_), frame.get(), spec.get());
    for (int64_t f = 0; f < n_freq; ++f) {
      const double re = spec.get()[f][0], im = spec.get()[f][1];
      power[f] = re * re + im * im;
    }
    for (int64_t m = 0; m < n_mels; ++m) {
      double sum = 0.0;
      for (int64_t f = bands_[2 * m]; f < bands_[2 * m + 1]; ++f) {
        sum += filters_[f * n_mels + m] * power[f];
      }
      const double value = std::log10(std::max(sum, 1e-10));
      mel[m * out.n_frames + t] = value;
      max_log = std::max(max_log, value);
    }
  }
  out.data.resize(mel.size());
  const double floor = max_log - 8.0;
  for (size_t i = 0; i < mel.size(); ++i) {
    out.data[i] = static_cast<float>((std::max(mel[i], floor) + 4.0) / 4.0);
  }
  return out;
}

std::pair<int64_t, int64_t> LogMelExtractor::frame_span(int64_t total, int64_t first,
                                                        int64_t count) const {
  // Frame t reads the centred samples [t * hop - n_fft / 2, t * hop + n_fft / 2); reflection at
  // the ends reads at most n_fft / 2 + 1 samples inside them.
  const int64_t pad = config_.n_fft / 2, hop = config_.hop_length;
  const int64_t begin = std::max<int64_t>(0, first * hop - pad);
  int64_t end = std::min(total, (first + count - 1) * hop - pad + config_.n_fft);
  if (first * hop < pad) end = std::max(end, std::min(total, pad + 1));  // reflected start
  return {begin, end};
}

std::vector<double> LogMelExtractor::log10_frames(std::span<const float> samples, int64_t offset,
                                                  int64_t total, int64_t first,
                                                  int64_t count) const {
  const int64_t n_fft = config_.n_fft, hop = config_.hop_length, n_mels = config_.feature_size;
  const int64_t n_freq = n_fft / 2 + 1, pad = n_fft / 2;
  AF_CHECK(total > pad && first >= 0 && count >= 0 && first + count <= total / hop,
           ErrorCode::kInvalidArgument, "log_mel", "frames [", first, ", ", first + count,
           ") of a ", total, "-sample signal (", total / hop, " frames, at least ", pad + 1,
           " samples)");
  const int64_t end = offset + int64_t(samples.size());
  // Sample i of the reflect-padded signal (numpy's pad mode "reflect": x[-k] = x[k]).
  const auto at = [&](int64_t i) -> double {
    if (i < 0) i = -i;
    if (i >= total) i = 2 * (total - 1) - i;
    AF_CHECK(i >= offset && i < end, ErrorCode::kInternal, "log_mel", "sample ", i,
             " is outside the given block [", offset, ", ", end, ")");
    return samples[size_t(i - offset)];
  };
  std::vector<double> mel(static_cast<size_t>(n_mels * count));
  std::unique_ptr<double, FftwFree> frame(fftw_alloc_real(static_cast<size_t>(n_fft)));
  std::unique_ptr<fftw_complex, FftwFree> spec(fftw_alloc_complex(static_cast<size_t>(n_freq)));
  std::vector<double> power(static_cast<size_t>(n_freq));
  for (int64_t t = 0; t < count; ++t) {
    const int64_t start = (first + t) * hop - pad;
    for (int64_t i = 0; i < n_fft; ++i) frame.get()[i] = at(start + i) * window_[i];
    fftw_execute_dft_r2c(static_cast<fftw_plan>(plan_), frame.get(), spec.get());
    for (int64_t f = 0; f < n_freq; ++f) {
      const double re = spec.get()[f][0], im = spec.get()[f][1];
      power[f] = re * re + im * im;
    }
    for (int64_t m = 0; m < n_mels; ++m) {
      double sum = 0.0;
      for (int64_t f = bands_[2 * m]; f < bands_[2 * m + 1]; ++f) {
        sum += filters_[f * n_mels + m] * power[f];
      }
      mel[m * count + t] = std::log10(std::max(sum, 1e-10));
    }
  }
  return mel;
}

std::vector<float> LogMelExtractor::finish(std::span<const double> log10_mel, double max_log10) {
  std::vector<float> out(log10_mel.size());
  const double floor = max_log10 - 8.0;
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<float>((std::max(log10_mel[i], floor) + 4.0) / 4.0);
  }
  return out;
}

}  // namespace af::modalities
