// WhisperFeatureExtractor parity: log-mel features against transformers' values
// (tests/fixtures/whisper, written by tools/make_whisper_fixtures.py) within 1e-5.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <numbers>
#include <string>
#include <vector>

#include "af/core/error.hpp"
#include "af/io/model_files.hpp"
#include "af/modalities/audio.hpp"
#include "af/modalities/log_mel.hpp"
#include "test_util.hpp"

namespace af::modalities {
namespace {

std::string fixtures() { return test::fixtures_dir() + "/whisper"; }

std::vector<float> read_f32(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  std::vector<float> v(static_cast<size_t>(in.tellg()) / sizeof(float));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(v.data()), std::streamsize(v.size() * sizeof(float)));
  return v;
}

// The tone formula of the fixture script: sum of a * sin(2 pi hz i / 16000) in float64.
std::vector<float> tone(const nlohmann::json& spec) {
  const auto n = static_cast<size_t>(16000 * spec["seconds"].get<double>());
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) {
    double sum = 0;
    for (const auto& part : spec["parts"]) {
      sum += part[0].get<double>() *
             std::sin(2 * std::numbers::pi * part[1].get<double>() * double(i) / 16000.0);
    }
    x[i] = static_cast<float>(sum);
  }
  return x;
}

TEST(LogMel, MatchesWhisperFeatureExtractor) {
  const nlohmann::json index = io::read_json_file(fixtures() + "/log_mel.json");
  const std::vector<float> expected = read_f32(fixtures() + "/log_mel.f32");
  const size_t stride = index["stride"].get<size_t>();
  int checked = 0;
  for (const auto& c : index["cases"]) {
    std::vector<float> samples;
    std::string name;
    if (c.contains("clip")) {
      name = c["clip"].get<std::string>();
      const std::string path = test::testdata_dir() + "/audio/" + name;
      if (!std::filesystem::exists(path)) continue;
      samples = Audio::load(path).samples();
    } else {
      name = c["tone"]["name"].get<std::string>();
      samples = tone(c["tone"]);
    }
    LogMelConfig config;
    config.feature_size = c["n_mels"].get<int64_t>();
    SCOPED_TRACE(name + " n_mels " + std::to_string(config.feature_size));
    const LogMel mel = LogMelExtractor(config).compute(samples);
    ASSERT_EQ(mel.n_mels, config.feature_size);
    ASSERT_EQ(mel.n_frames, c["n_frames"].get<int64_t>());
    const size_t offset = c["offset"].get<size_t>(), count = c["count"].get<size_t>();
    double worst = 0;
    for (size_t i = 0; i < count; ++i) {
      worst = std::max(worst, std::abs(double(mel.data[i * stride]) - expected[offset + i]));
    }
    // The float64 NumPy path differs only by float32 rounding (measured: 1.2e-7 at most).
    EXPECT_LE(worst, 1e-6);
    for (int64_t m = 0; m < mel.n_mels; ++m) {
      double sum = 0;
      for (int64_t t = 0; t < mel.n_frames; ++t) sum += mel.data[m * mel.n_frames + t];
      // Every value within 1e-5 keeps a row's sum of 3000 within 3000 * 1e-5.
      EXPECT_NEAR(sum, c["row_sums"][m].get<double>(), 1e-5 * double(mel.n_frames)) << m;
    }
    ++checked;
  }
  EXPECT_GE(checked, 10);
}

TEST(LogMel, SilenceIsTheFloor) {
  // log10(1e-10) = -10 everywhere; max - 8 does not lift it; (-10 + 4) / 4 = -1.5.
  const LogMel mel = LogMelExtractor(LogMelConfig{}).compute(std::vector<float>(16000, 0.0f));
  for (float v : mel.data) ASSERT_EQ(v, -1.5f);
  EXPECT_EQ(mel.n_frames, 3000);
  EXPECT_EQ(mel.n_mels, 80);
}

TEST(LogMel, SlaneyFiltersAreNormalisedTriangles) {
  const std::vector<double> f = slaney_mel_filters(201, 80, 0.0, 8000.0, 16000);
  // Slaney normalisation: each triangle's area (in Hz, 40 Hz bins) is 1.
  for (int m = 0; m < 80; ++m) {
    double area = 0;
    for (int k = 0; k < 201; ++k) area += f[k * 80 + m] * 40.0;
    EXPECT_NEAR(area, 1.0, 0.35) << m;
  }
}

TEST(LogMelConfigTest, ReadsAndChecksPreprocessorConfig) {
  const LogMelConfig c = LogMelConfig::from_json(
      nlohmann::json::parse(R"({"feature_extractor_type": "WhisperFeatureExtractor",
        "feature_size": 128, "hop_length": 160, "n_fft": 400, "chunk_length": 30,
        "sampling_rate": 16000, "padding_value": 0.0})"),
      "p.json");
  EXPECT_EQ(c.feature_size, 128);
  EXPECT_EQ(c.n_frames(), 3000);
  for (const char* bad :
       {R"({"feature_size": 0})", R"({"n_fft": 1e9})", R"({"hop_length": -1})",
        R"({"sampling_rate": 44100})", R"({"chunk_length": "30"})", R"({"dither": 0.0001})",
        R"({"feature_extractor_type": "SeamlessM4TFeatureExtractor"})", "[]"}) {
    SCOPED_TRACE(bad);
    try {
      LogMelConfig::from_json(nlohmann::json::parse(bad), "p.json");
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("p.json"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace af::modalities
