// Whisper greedy generation against transformers' generate() on the tiny random model
// (tests/fixtures/whisper/tiny_reference.json), and the logits rules on hand-made scores.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "af/core/error.hpp"
#include "af/io/model_files.hpp"
#include "af/modalities/audio.hpp"
#include "af/modalities/log_mel.hpp"
#include "af/models/whisper_generate.hpp"
#include "test_util.hpp"

namespace af::models {
namespace {

std::string tiny_dir() { return test::fixtures_dir() + "/whisper/tiny"; }
std::string jfk() { return test::testdata_dir() + "/audio/jfk_16k.wav"; }
constexpr float kInf = std::numeric_limits<float>::infinity();

TEST(WhisperGenerate, GreedyIdsEqualTransformersGenerate) {
  AF_REQUIRE_TESTDATA(jfk());
  const nlohmann::json ref =
      io::read_json_file(test::fixtures_dir() + "/whisper/tiny_reference.json");
  auto model = Whisper::load(tiny_dir());
  const auto config = WhisperGenerationConfig::load(tiny_dir());
  const modalities::LogMelExtractor fe(modalities::LogMelConfig::load(tiny_dir()));
  const auto mel = fe.compute(modalities::Audio::load(jfk()).samples());
  int cases = 0;
  for (const auto& [name, c] : ref["generate"].items()) {
    SCOPED_TRACE(name);
    WhisperGenerateOptions options;
    options.language = c["options"].value("language", "");
    options.task = c["options"].value("task", "");
    options.timestamps = c["options"].value("return_timestamps", false);
    options.max_new_tokens = c["options"].value("max_new_tokens", 20);
    const WhisperGeneration g = whisper_generate(*model, mel.data, config, options);
    EXPECT_EQ(g.tokens, c["ids"].get<std::vector<int32_t>>());
    EXPECT_EQ(g.prompt.front(), 101);
    if (options.timestamps) {
      EXPECT_NE(g.prompt.back(), 110);
      EXPECT_GE(g.tokens.front(), 111);  // a timestamp opens the first segment
    } else {
      EXPECT_EQ(g.prompt.back(), 110);  // <|notimestamps|>
    }
    ++cases;
  }
  EXPECT_EQ(cases, 7);
}

// Beam search as transformers' generate(num_beams=N) (tests/fixtures/whisper/tiny_beam.json,
// tools/make_whisper_beam_fixtures.py): with and without timestamps, forced and detected
// language, translate; 2 to 5 beams. In most cases the beam result differs from greedy.
TEST(WhisperGenerate, BeamSearchIdsEqualTransformersGenerate) {
  AF_REQUIRE_TESTDATA(jfk());
  const nlohmann::json ref = io::read_json_file(test::fixtures_dir() + "/whisper/tiny_beam.json");
  auto model = Whisper::load(tiny_dir());
  const auto config = WhisperGenerationConfig::load(tiny_dir());
  const modalities::LogMelExtractor fe(modalities::LogMelConfig::load(tiny_dir()));
  const auto mel = fe.compute(modalities::Audio::load(jfk()).samples());
  int cases = 0, unlike_greedy = 0;
  for (const auto& [name, c] : ref["generate"].items()) {
    SCOPED_TRACE(name);
    WhisperGenerateOptions options;
    options.language = c["options"].value("language", "");
    options.task = c["options"].value("task", "");
    options.timestamps = c["options"].value("return_timestamps", false);
    options.max_new_tokens = c["options"]["max_new_tokens"];
    options.search.beam_size = c["options"]["num_beams"];
    const WhisperGeneration g = whisper_generate(*model, mel.data, config, options);
    EXPECT_EQ(g.tokens, c["ids"].get<std::vector<int32_t>>());
    unlike_greedy += c["ids"] != c["greedy_ids"];
    ++cases;
  }
  EXPECT_EQ(cases, 6);
  EXPECT_GE(unlike_greedy, 4);
}

TEST(WhisperGenerate, BeamSearchRefusesBadSettings) {
  auto model = Whisper::load(tiny_dir());
  const auto config = WhisperGenerationConfig::load(tiny_dir());
  const std::vector<float> mel(80 * 3000, -0.5f);
  WhisperGenerateOptions o;
  o.language = "en";
  o.max_new_tokens = 4;
  o.search.beam_size = 0;
  EXPECT_THROW(whisper_generate(*model, mel, config, o), Error);
  o.search.beam_size = 1000;
  EXPECT_THROW(whisper_generate(*model, mel, config, o), Error);
  o.search.beam_size = 3;
  o.search.patience = 0.0;
  o.search.ctranslate2 = true;
  EXPECT_THROW(whisper_generate(*model, mel, config, o), Error);
  o.search.patience = 2.0;  // CTranslate2's flavour runs and stays within max_new_tokens
  const WhisperGeneration g = whisper_generate(*model, mel, config, o);
  EXPECT_GE(g.tokens.size(), 1u);
  EXPECT_LE(g.tokens.size(), 4u);
}

TEST(WhisperGenerate, PromptFollowsLanguageAndTask) {
  AF_REQUIRE_TESTDATA(jfk());
  auto model = Whisper::load(tiny_dir());
  const auto config = WhisperGenerationConfig::load(tiny_dir());
  const std::vector<float> mel(80 * 3000, -0.5f);
  WhisperGenerateOptions o;
  o.language = "de";
  o.max_new_tokens = 1;
  EXPECT_EQ(whisper_generate(*model, mel, config, o).prompt,
            (std::vector<int32_t>{101, 103, 106, 110}));
  o.language = "<|fr|>";
  o.task = "translate";
  o.timestamps = true;
  EXPECT_EQ(whisper_generate(*model, mel, config, o).prompt, (std::vector<int32_t>{101, 104, 105}));
  o.language = "xx";
  EXPECT_THROW(whisper_generate(*model, mel, config, o), Error);
  o.language = "en";
  o.task = "summarize";
  EXPECT_THROW(whisper_generate(*model, mel, config, o), Error);
}

WhisperGenerationConfig rules_config() {
  return WhisperGenerationConfig::from_json(
      nlohmann::json::parse(R"({"decoder_start_token_id": 101, "eos_token_id": 100,
        "no_timestamps_token_id": 110, "suppress_tokens": [5], "begin_suppress_tokens": [100],
        "max_initial_timestamp_index": 2})"),
      "g.json");
}

TEST(WhisperGenerate, SuppressRules) {
  const auto c = rules_config();
  std::vector<float> s(120, 0.0f);
  const std::vector<int32_t> prompt{101, 102, 106, 110};
  whisper_process_logits(c, false, prompt, prompt.size(), s);
  EXPECT_EQ(s[5], -kInf);
  EXPECT_EQ(s[100], -kInf);  // eos cannot come first
  std::vector<int32_t> later = prompt;
  later.push_back(7);
  std::fill(s.begin(), s.end(), 0.0f);
  whisper_process_logits(c, false, later, prompt.size(), s);
  EXPECT_EQ(s[5], -kInf);
  EXPECT_EQ(s[100], 0.0f);
}

TEST(WhisperGenerate, TimestampRules) {
  const auto c = rules_config();
  const std::vector<int32_t> prompt{101, 102, 106};
  std::vector<float> s(120, 0.0f);
  // First token: a timestamp no later than max_initial_timestamp_index.
  whisper_process_logits(c, true, prompt, prompt.size(), s);
  for (int i = 0; i < 111; ++i) EXPECT_EQ(s[i], -kInf) << i;
  for (int i = 111; i <= 113; ++i) EXPECT_EQ(s[i], 0.0f) << i;
  for (int i = 114; i < 120; ++i) EXPECT_EQ(s[i], -kInf) << i;
  // After text following <|0.02|>: timestamps below it are banned, text stays (when it wins).
  std::vector<int32_t> ids{101, 102, 106, 112, 7};
  s.assign(120, 0.0f);
  s[7] = 20.0f;
  whisper_process_logits(c, true, ids, prompt.size(), s);
  EXPECT_EQ(s[111], -kInf);
  EXPECT_EQ(s[112], -kInf);  // the same timestamp again is banned
  EXPECT_EQ(s[7], 20.0f);
  EXPECT_EQ(s[110], -kInf);  // <|notimestamps|> is never generated
  // A single closing timestamp: the next must be a timestamp or eos (not text).
  ids.push_back(115);
  s.assign(120, 0.0f);
  s[100] = 5.0f;  // eos likelier than all timestamps together, so text is not forced out
  whisper_process_logits(c, true, ids, prompt.size(), s);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(s[i], -kInf) << i;
  EXPECT_EQ(s[100], 5.0f);
  EXPECT_EQ(s[115], 0.0f);  // may repeat to open the next segment at the same time
  // Two timestamps in a row: the next must be text.
  ids.push_back(115);
  s.assign(120, 0.0f);
  whisper_process_logits(c, true, ids, prompt.size(), s);
  for (int i = 111; i < 120; ++i) EXPECT_EQ(s[i], -kInf) << i;
  // Timestamps' total probability beating every text token forces a timestamp.
  ids.pop_back();
  ids.pop_back();
  s.assign(120, 0.0f);
  s[7] = 1.0f;
  for (int i = 113; i < 120; ++i) s[i] = 0.9f;
  whisper_process_logits(c, true, ids, prompt.size(), s);
  EXPECT_EQ(s[7], -kInf);
}

TEST(WhisperGenerate, BadGenerationConfigNamesTheKey) {
  for (const char* bad : {R"({})", R"({"decoder_start_token_id": -3})",
                          R"({"decoder_start_token_id": 1, "suppress_tokens": "x"})",
                          R"({"decoder_start_token_id": 1, "lang_to_id": {"<|en|>": "a"}})",
                          R"({"decoder_start_token_id": 1, "forced_decoder_ids": [[1]]})"}) {
    SCOPED_TRACE(bad);
    try {
      WhisperGenerationConfig::from_json(nlohmann::json::parse(bad), "g.json");
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("g.json"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace af::models
