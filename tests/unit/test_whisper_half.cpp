// Whisper's float16-exact decoder weights: a copy of the tiny fixture whose float32 weights are
// rounded to float16 values (as in the CTranslate2 checkpoints, float16 widened to float32) is
// decoded reading half the weight bytes per token, with the encoder output bit-identical and the
// logits within float32 rounding of the float32 path (LoadOptions::dtype = F32) and the same
// argmax; a float32 checkpoint keeps float32 weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "af/core/half.hpp"
#include "af/io/model_files.hpp"
#include "af/modalities/audio.hpp"
#include "af/modalities/log_mel.hpp"
#include "af/models/whisper.hpp"
#include "io_test_util.hpp"
#include "test_util.hpp"

namespace af::models {
namespace {

namespace fs = std::filesystem;

std::string tiny_dir() { return test::fixtures_dir() + "/whisper/tiny"; }
std::string jfk() { return test::testdata_dir() + "/audio/jfk_16k.wav"; }

std::vector<uint8_t> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The tiny fixture in `out` with every F32 tensor's values rounded to float16 (stored as F32).
void write_rounded_copy(const fs::path& out) {
  for (const char* f : {"config.json", "generation_config.json", "preprocessor_config.json"}) {
    fs::copy_file(fs::path(tiny_dir()) / f, out / f);
  }
  std::vector<uint8_t> bytes = read_bytes(fs::path(tiny_dir()) / "model.safetensors");
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  const auto header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + header_len);
  int rounded = 0;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__" || info["dtype"] != "F32") continue;
    const auto offsets = info["data_offsets"].get<std::vector<size_t>>();
    for (size_t at = 8 + header_len + offsets[0]; at < 8 + header_len + offsets[1]; at += 4) {
      float v;
      std::memcpy(&v, bytes.data() + at, 4);
      v = f16_to_f32(f32_to_f16(v));
      std::memcpy(bytes.data() + at, &v, 4);
    }
    ++rounded;
  }
  ASSERT_GT(rounded, 10);
  io::test::write_file(out / "model.safetensors", bytes);
}

std::vector<float> jfk_mel() {
  const modalities::LogMelExtractor fe(modalities::LogMelConfig::load(tiny_dir()));
  return fe.compute(modalities::Audio::load(jfk()).samples()).data;
}

// Per-token weight bytes of a float32 decoder: 6 d x d matmuls (self q/k/v/out, cross q/out)
// and fc1/fc2 per layer, and the vocab x d output projection.
int64_t float32_token_bytes(const WhisperConfig& c) {
  const int64_t d = c.d_model;
  return 4 * (c.decoder_layers * (6 * d * d + 2 * d * c.decoder_ffn) + c.vocab_size * d);
}

TEST(WhisperHalfWeights, ExactFloat16WeightsReadHalfTheBytesWithTheSameLogits) {
  AF_REQUIRE_TESTDATA(jfk());
  io::test::TempDir dir;
  write_rounded_copy(dir.path());
  auto half = Whisper::load(dir.path().string());
  LoadOptions f32;
  f32.dtype = DType::F32;
  auto full = Whisper::load(dir.path().string(), f32);
  EXPECT_EQ(full->token_weight_bytes(), float32_token_bytes(full->config()));
  EXPECT_EQ(2 * half->token_weight_bytes(), full->token_weight_bytes());

  const std::vector<float> mel = jfk_mel();
  const std::vector<float> encoded = full->encode(mel);
  EXPECT_EQ(half->encode(mel), encoded);  // the encoder keeps float32: the same bits
  const nlohmann::json ref =
      io::read_json_file(test::fixtures_dir() + "/whisper/tiny_reference.json");
  const std::vector<int32_t> ids = ref["decoder_ids"].get<std::vector<int32_t>>();
  WhisperState s_half = half->start(encoded), s_full = full->start(encoded);
  const std::vector<float> a = half->decode(s_half, ids, true);
  const std::vector<float> b = full->decode(s_full, ids, true);
  ASSERT_EQ(a.size(), b.size());
  const size_t vocab = size_t(full->config().vocab_size);
  for (size_t t = 0; t < ids.size(); ++t) {
    SCOPED_TRACE(t);
    double worst = 0;
    for (size_t j = 0; j < vocab; ++j) {
      worst = std::max(worst, std::abs(double(a[t * vocab + j]) - b[t * vocab + j]));
    }
    EXPECT_LE(worst, 1e-5);
    const auto argmax = [&](const std::vector<float>& v) {
      return std::max_element(v.begin() + ptrdiff_t(t * vocab),
                              v.begin() + ptrdiff_t((t + 1) * vocab)) -
             v.begin();
    };
    EXPECT_EQ(argmax(a), argmax(b));
  }
}

// The vectorised check behind the float16 copies: every float16 value (subnormals, zeros of
// both signs, infinities) converts back to its own bits, in long arrays as in single values,
// and one inexact value anywhere (past the first block too) refuses the whole array.
TEST(WhisperHalfWeights, ExactConversionTakesEveryFloat16AndNothingElse) {
  std::vector<float> all;
  std::vector<uint16_t> bits;
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = f16_to_f32(uint16_t(h));
    if (std::isnan(f)) continue;
    all.push_back(f);
    bits.push_back(uint16_t(h));
  }
  std::vector<uint16_t> out(all.size());
  ASSERT_TRUE(f32_to_f16_exact(all.data(), int64_t(all.size()), out.data()));
  EXPECT_EQ(out, bits);
  for (size_t i = 0; i < all.size(); i += 997) {
    uint16_t one = 0;
    ASSERT_TRUE(f32_to_f16_exact(&all[i], 1, &one));
    EXPECT_EQ(one, bits[i]);
  }
  const float inexact[] = {std::nanf(""), 65520.0f,    1.0f + 0x1p-11f,     0x1p-25f,
                           0x1.8p-24f,    -0x1.8p-24f, 0x1p-15f + 0x1p-30f, 1e-30f,
                           -1e10f,        0x1.002p-14f};
  for (float bad : inexact) {
    SCOPED_TRACE(bad);
    std::vector<float> v(all.begin(), all.begin() + 1000);
    v[700] = bad;
    EXPECT_FALSE(f32_to_f16_exact(v.data(), int64_t(v.size()), out.data()));
    uint16_t one = 0;
    EXPECT_FALSE(f32_to_f16_exact(&bad, 1, &one));
  }
}

TEST(WhisperHalfWeights, Float32CheckpointKeepsFloat32Weights) {
  auto model = Whisper::load(tiny_dir());
  EXPECT_EQ(model->token_weight_bytes(), float32_token_bytes(model->config()));
}

}  // namespace
}  // namespace af::models
