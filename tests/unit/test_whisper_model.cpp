// Whisper against transformers on a tiny random WhisperForConditionalGeneration
// (tests/fixtures/whisper/tiny, from tools/make_whisper_fixtures.py): encoder output and decoder
// logits at every position within 1e-4, the KV-cached step-by-step decode equal to one pass, and
// bad configs/inputs refused with af::Error.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "af/core/error.hpp"
#include "af/io/model_files.hpp"
#include "af/modalities/audio.hpp"
#include "af/modalities/log_mel.hpp"
#include "af/models/whisper.hpp"
#include "test_util.hpp"

namespace af::models {
namespace {

std::string tiny_dir() { return test::fixtures_dir() + "/whisper/tiny"; }
std::string jfk() { return test::testdata_dir() + "/audio/jfk_16k.wav"; }

std::vector<float> jfk_mel() {
  const modalities::LogMelExtractor fe(modalities::LogMelConfig::load(tiny_dir()));
  return fe.compute(modalities::Audio::load(jfk()).samples()).data;
}

double max_diff(const float* a, const float* b, size_t n) {
  double worst = 0;
  for (size_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(double(a[i]) - b[i]));
  return worst;
}

TEST(WhisperModel, EncoderOutputMatchesTransformers) {
  AF_REQUIRE_TESTDATA(jfk());
  auto model = Whisper::load(tiny_dir());
  const std::vector<float> encoded = model->encode(jfk_mel());
  const std::vector<float> expected =
      test::read_f32(test::fixtures_dir() + "/whisper/tiny_encoder.f32");
  ASSERT_EQ(encoded.size(), expected.size());
  EXPECT_LE(max_diff(encoded.data(), expected.data(), encoded.size()), 1e-4);
}

TEST(WhisperModel, DecoderLogitsMatchTransformersAtEveryPosition) {
  AF_REQUIRE_TESTDATA(jfk());
  const nlohmann::json ref =
      io::read_json_file(test::fixtures_dir() + "/whisper/tiny_reference.json");
  const std::vector<int32_t> ids = ref["decoder_ids"].get<std::vector<int32_t>>();
  auto model = Whisper::load(tiny_dir());
  const int64_t vocab = model->config().vocab_size;
  const std::vector<float> encoded = model->encode(jfk_mel());

  WhisperState one_pass = model->start(encoded);
  const std::vector<float> logits = model->decode(one_pass, ids, true);
  ASSERT_EQ(logits.size(), ids.size() * size_t(vocab));
  WhisperState stepwise = model->start(encoded);
  for (size_t t = 0; t < ids.size(); ++t) {
    SCOPED_TRACE(t);
    const std::vector<float> expected = ref["decoder_logits"][t].get<std::vector<float>>();
    EXPECT_LE(max_diff(logits.data() + t * vocab, expected.data(), size_t(vocab)), 1e-4);
    // One token at a time through the KV cache gives the same logits.
    const std::vector<float> step = model->decode(stepwise, std::span(&ids[t], 1), false);
    EXPECT_LE(max_diff(step.data(), expected.data(), size_t(vocab)), 1e-4);
  }
  EXPECT_EQ(stepwise.n_past, int64_t(ids.size()));
}

TEST(WhisperModel, BadInputsAreRefused) {
  auto model = Whisper::load(tiny_dir());
  EXPECT_THROW(model->encode(std::vector<float>(10)), Error);
  EXPECT_THROW(model->start(std::vector<float>(10)), Error);
  WhisperState s = model->start(std::vector<float>(1500 * 16));
  const std::vector<int32_t> bad_id{500};
  EXPECT_THROW(model->decode(s, bad_id, false), Error);
  // Past max_target_positions (64): a clear kOutOfRange, not a write past the cache.
  WhisperState full = model->start(std::vector<float>(1500 * 16));
  const std::vector<int32_t> many(65, 1);
  try {
    model->decode(full, many, false);
    ADD_FAILURE() << "accepted 65 positions";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kOutOfRange);
    EXPECT_NE(std::string(e.what()).find("max_target_positions"), std::string::npos);
  }
  // A non-Whisper folder is refused naming the architecture.
  EXPECT_THROW(Whisper::load(test::testdata_dir() + "/models/stories260K-hf"), Error);
}

TEST(WhisperModel, CausalLmLoaderPointsToWhisper) {
  try {
    models::load(tiny_dir(), {});
    ADD_FAILURE() << "a Whisper folder loaded as a causal LM";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("transcribe"), std::string::npos) << e.what();
  }
}

TEST(WhisperModel, ConfigErrorsNameTheKey) {
  nlohmann::json j = io::read_json_file(tiny_dir() + "/config.json");
  j["d_model"] = 15;  // not a multiple of the 2 heads
  try {
    WhisperConfig::from(io::HfConfig(j, "c.json"));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("c.json"), std::string::npos) << e.what();
  }
  j = io::read_json_file(tiny_dir() + "/config.json");
  j["activation_function"] = "relu";
  EXPECT_THROW(WhisperConfig::from(io::HfConfig(j, "c.json")), Error);
  j = io::read_json_file(tiny_dir() + "/config.json");
  j["encoder_layers"] = -1;
  EXPECT_THROW(WhisperConfig::from(io::HfConfig(j, "c.json")), Error);
}

}  // namespace
}  // namespace af::models
