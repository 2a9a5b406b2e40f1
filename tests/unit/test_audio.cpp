// Audio decoding: every container libsndfile writes here is read back to the samples written,
// channels are averaged, other rates come out at 16 kHz, and bad files give af::Error.
#include <gtest/gtest.h>
#include <sndfile.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numbers>
#include <string>
#include <vector>

#include "af/core/error.hpp"
#include "af/modalities/audio.hpp"
#include "test_util.hpp"

namespace af::modalities {
namespace {

namespace fs = std::filesystem;

std::string temp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("af_audio_" + std::to_string(getpid()) + "_" + name))
      .string();
}

// Writes interleaved frames[n * channels] with libsndfile; returns the path.
std::string write_audio(const std::string& name, int format, int rate, int channels,
                        const std::vector<float>& frames) {
  const std::string path = temp_path(name);
  SF_INFO info{};
  info.samplerate = rate;
  info.channels = channels;
  info.format = format;
  SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
  EXPECT_NE(f, nullptr) << sf_strerror(nullptr);
  if (!f) return path;
  // Float samples written to integer formats are scaled by 2^(bits-1) like our reader divides.
  sf_command(f, SFC_SET_NORM_FLOAT, nullptr, SF_TRUE);
  EXPECT_EQ(sf_writef_float(f, frames.data(), sf_count_t(frames.size() / channels)),
            sf_count_t(frames.size() / channels));
  sf_close(f);
  return path;
}

std::vector<float> tone(int rate, double seconds, double hz, double amplitude = 0.5) {
  std::vector<float> x(static_cast<size_t>(rate * seconds));
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = float(amplitude * std::sin(2 * std::numbers::pi * hz * double(i) / rate));
  }
  return x;
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

ErrorCode error_code_of(const std::function<void()>& fn, std::string* message = nullptr) {
  try {
    fn();
  } catch (const Error& e) {
    if (message) *message = e.what();
    return e.code();
  }
  ADD_FAILURE() << "no af::Error thrown";
  return ErrorCode::kInternal;
}

struct LosslessCase {
  const char* name;
  int format;
  double tolerance;  // one step of the format's quantization
};

TEST(Audio, LosslessFormatsReadBackTheWrittenSamples) {
  const std::vector<float> x = tone(16000, 0.5, 440.0);
  for (const LosslessCase& c :
       {LosslessCase{"pcm16.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 1.0 / 32768},
        LosslessCase{"pcm24.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_24, 1.0 / 8388608},
        LosslessCase{"pcm32.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_32, 1e-7},
        LosslessCase{"float.wav", SF_FORMAT_WAV | SF_FORMAT_FLOAT, 0.0},
        LosslessCase{"pcm16.flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 1.0 / 32768}}) {
    SCOPED_TRACE(c.name);
    const std::string path = write_audio(c.name, c.format, 16000, 1, x);
    const Audio audio = Audio::load(path);
    fs::remove(path);
    ASSERT_EQ(audio.samples().size(), x.size());
    EXPECT_EQ(audio.source_rate(), 16000);
    double worst = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      worst = std::max(worst, std::abs(double(audio.samples()[i]) - x[i]));
    }
    EXPECT_LE(worst, c.tolerance);
  }
}

// Lossy codecs: the decoded tone must still correlate with the written one (codec delay aside).
TEST(Audio, LossyFormatsDecodeToTheTone) {
  const std::vector<float> x = tone(16000, 1.0, 440.0);
  for (const auto& [name, format] :
       {std::pair{"vorbis.ogg", SF_FORMAT_OGG | SF_FORMAT_VORBIS},
        std::pair{"layer3.mp3", SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III}}) {
    SCOPED_TRACE(name);
    const std::string path = write_audio(name, format, 16000, 1, x);
    const Audio audio = Audio::load(path);
    fs::remove(path);
    ASSERT_GE(audio.samples().size(), x.size() * 9 / 10);
    double energy = 0;
    for (float v : audio.samples()) energy += double(v) * v;
    const double rms = std::sqrt(energy / double(audio.samples().size()));
    EXPECT_NEAR(rms, 0.5 / std::sqrt(2.0), 0.05);
  }
}

TEST(Audio, StereoIsAveragedToMono) {
  std::vector<float> frames;
  for (int i = 0; i < 1000; ++i) {
    frames.push_back(0.25f);
    frames.push_back(i % 2 ? -0.75f : 0.75f);
  }
  const std::string path =
      write_audio("stereo.wav", SF_FORMAT_WAV | SF_FORMAT_FLOAT, 16000, 2, frames);
  const Audio audio = Audio::load(path);
  fs::remove(path);
  ASSERT_EQ(audio.samples().size(), 1000u);
  EXPECT_EQ(audio.source_channels(), 2);
  EXPECT_FLOAT_EQ(audio.samples()[0], 0.5f);
  EXPECT_FLOAT_EQ(audio.samples()[1], -0.25f);
}

TEST(Audio, OtherRatesAreResampledTo16k) {
  for (int rate : {8000, 22050, 44100, 48000, 96000, 192000}) {
    SCOPED_TRACE(rate);
    const std::string path =
        write_audio("rate.wav", SF_FORMAT_WAV | SF_FORMAT_FLOAT, rate, 1, tone(rate, 1.0, 440.0));
    const Audio audio = Audio::load(path);
    fs::remove(path);
    EXPECT_EQ(audio.source_rate(), rate);
    ASSERT_EQ(audio.samples().size(), 16000u);
    // Away from the edges (filter run-in), the 16 kHz samples are the tone itself.
    const std::vector<float> expect = tone(16000, 1.0, 440.0);
    double worst = 0;
    for (size_t i = 1000; i < 15000; ++i) {
      worst = std::max(worst, std::abs(double(audio.samples()[i]) - expect[i]));
    }
    EXPECT_LT(worst, 2e-3);
  }
}

// fuzz_audio found libsoxr crashing on a null output buffer when a file held fewer source frames
// than one 16 kHz sample. Now such audio gives its one sample, or is refused as too short when
// libsoxr's filter delay swallows it.
TEST(AudioBadInput, FewerFramesThanOneOutputSampleAreRefused) {
  EXPECT_EQ(Audio::from_samples({0.25f}, 22050).samples().size(), 1u);
  for (int rate : {44100, 48000, 192000}) {
    std::string message;
    EXPECT_EQ(error_code_of([&] { Audio::from_samples({0.25f}, rate, "one.wav"); }, &message),
              ErrorCode::kFormat);
    EXPECT_NE(message.find("too short"), std::string::npos) << message;
  }
  const std::string path =
      test::source_dir() + "/tests/fuzz/corpus/fuzz_audio/soxr_one_frame_22k.wav";
  try {
    EXPECT_FALSE(Audio::load(path).samples().empty());
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFormat) << e.what();
  }
}

// Files are resampled as a stream (so a long high-rate file never sits in memory at its source
// rate); the result equals resampling the whole signal at once.
TEST(Audio, StreamedResamplingEqualsOneShot) {
  for (int rate : {8000, 44100, 192000}) {
    SCOPED_TRACE(rate);
    const std::vector<float> x = tone(rate, 1.3, 1234.5, 0.4);
    const std::string path = write_audio("stream.wav", SF_FORMAT_WAV | SF_FORMAT_FLOAT, rate, 1, x);
    const Audio streamed = Audio::load(path);
    fs::remove(path);
    const std::vector<float> whole = resample(x, rate, 16000);
    ASSERT_EQ(streamed.samples().size(), whole.size());
    double worst = 0;
    for (size_t i = 0; i < whole.size(); ++i) {
      worst = std::max(worst, std::abs(double(streamed.samples()[i]) - whole[i]));
    }
    EXPECT_LE(worst, 1e-6);
  }
}

TEST(Audio, SharedJfkClipIsThePcmScaled) {
  const std::string path = test::testdata_dir() + "/audio/jfk_16k.wav";
  AF_REQUIRE_TESTDATA(path);
  const Audio audio = Audio::load(path);
  EXPECT_EQ(audio.samples().size(), 176000u);
  const std::vector<uint8_t> bytes = read_bytes(path);
  for (size_t i = 0; i < audio.samples().size(); i += 997) {
    const auto pcm = int16_t(bytes[44 + 2 * i] | (bytes[45 + 2 * i] << 8));
    ASSERT_EQ(audio.samples()[i], float(pcm) / 32768.0f) << i;
  }
  EXPECT_EQ(audio.hash().size(), 64u);
  // The same samples from another container hash the same.
  EXPECT_EQ(Audio::from_samples(audio.samples(), 16000).hash(), audio.hash());
}

TEST(AudioBadInput, EmptyNonAudioAndTruncatedFilesAreRefused) {
  EXPECT_EQ(error_code_of([] { Audio::decode({}, "empty"); }), ErrorCode::kFormat);
  const std::string text = "this is not audio at all, just some text bytes........";
  std::string message;
  EXPECT_EQ(
      error_code_of(
          [&] {
            Audio::decode({reinterpret_cast<const uint8_t*>(text.data()), text.size()}, "text.txt");
          },
          &message),
      ErrorCode::kFormat);
  EXPECT_NE(message.find("text.txt"), std::string::npos) << message;
  const std::string path =
      write_audio("cut.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, 1, tone(16000, 0.5, 440.0));
  std::vector<uint8_t> bytes = read_bytes(path);
  fs::remove(path);
  for (size_t keep : {size_t(4), size_t(12), size_t(30), size_t(44)}) {
    SCOPED_TRACE(keep);
    EXPECT_THROW(Audio::decode(std::span(bytes.data(), keep), "cut.wav"), Error);
  }
  // A header whose data chunk was cut keeps the samples that are there.
  const Audio partial = Audio::decode(std::span(bytes.data(), 44 + 2000), "cut.wav");
  EXPECT_EQ(partial.samples().size(), 1000u);
}

TEST(AudioBadInput, ZeroSamplesAreRefused) {
  const std::string path = write_audio("zero.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, 1, {});
  std::string message;
  EXPECT_EQ(error_code_of([&] { Audio::load(path); }, &message), ErrorCode::kFormat);
  fs::remove(path);
  EXPECT_NE(message.find("no samples"), std::string::npos) << message;
}

TEST(AudioBadInput, NanSamplesAreRefused) {
  std::vector<float> x = tone(16000, 0.1, 440.0);
  x[123] = std::nanf("");
  const std::string path = write_audio("nan.wav", SF_FORMAT_WAV | SF_FORMAT_FLOAT, 16000, 1, x);
  std::string message;
  EXPECT_EQ(error_code_of([&] { Audio::load(path); }, &message), ErrorCode::kFormat);
  fs::remove(path);
  EXPECT_NE(message.find("sample 123"), std::string::npos) << message;
  EXPECT_NE(message.find("NaN"), std::string::npos) << message;
  EXPECT_THROW(Audio::from_samples(x, 16000), Error);
}

// fuzz_audio found a float WAV whose finite samples near FLT_MAX came out of the resampler as
// infinities; such samples are now refused.
TEST(AudioBadInput, HugeFloatSamplesAreRefused) {
  std::vector<float> x = tone(22050, 0.05, 440.0);
  x[17] = 3e38f;
  const std::string path = write_audio("huge.wav", SF_FORMAT_WAV | SF_FORMAT_FLOAT, 22050, 1, x);
  std::string message;
  EXPECT_EQ(error_code_of([&] { Audio::load(path); }, &message), ErrorCode::kOutOfRange);
  fs::remove(path);
  EXPECT_NE(message.find("sample 17"), std::string::npos) << message;
  EXPECT_NE(message.find("max_abs_sample"), std::string::npos) << message;
  EXPECT_THROW(Audio::from_samples(x, 22050), Error);
  x[17] = 1.5f;  // a little beyond full scale is ordinary clipping, kept
  EXPECT_EQ(Audio::from_samples(x, 22050).samples().size(), 800u);
}

TEST(AudioBadInput, LimitsAreCheckedFromTheHeader) {
  const std::string path =
      write_audio("long.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, 1, tone(16000, 2.0, 440.0));
  AudioLimits limits;
  limits.max_seconds = 1.0;
  std::string message;
  EXPECT_EQ(error_code_of([&] { Audio::load(path, limits); }, &message), ErrorCode::kOutOfRange);
  EXPECT_NE(message.find("max_seconds"), std::string::npos) << message;
  limits = {};
  limits.max_file_bytes = 1000;
  EXPECT_EQ(error_code_of([&] { Audio::load(path, limits); }), ErrorCode::kOutOfRange);
  limits = {};
  limits.min_sample_rate = 22050;
  EXPECT_EQ(error_code_of([&] { Audio::load(path, limits); }), ErrorCode::kOutOfRange);
  fs::remove(path);

  // A WAV header that claims 2^31 bytes of samples but holds none: libsndfile trusts the file
  // length, so nothing that size is allocated, and the empty result is refused.
  std::vector<uint8_t> header = read_bytes(
      write_audio("claim.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, 1, tone(16000, 0.1, 1)));
  fs::remove(temp_path("claim.wav"));
  header.resize(44);
  const uint32_t claim = 0x7FFFFFF0u;
  for (int i = 0; i < 4; ++i) header[40 + i] = uint8_t(claim >> (8 * i));
  EXPECT_EQ(error_code_of([&] { Audio::decode(header, "claim.wav"); }), ErrorCode::kFormat);
  EXPECT_EQ(error_code_of([] { Audio::load("/nonexistent/x.wav"); }), ErrorCode::kIo);
  EXPECT_EQ(error_code_of([] { Audio::load(fs::temp_directory_path().string()); }),
            ErrorCode::kFormat);
}

}  // namespace
}  // namespace af::modalities
