// Real Whisper weights (scripts/fetch_models.sh puts them under AF_MODELS; never in the
// repository): tiny.en and base (multilingual) transcribe the shared clips as CTranslate2 /
// faster-whisper does. tests/fixtures/whisper/faster_whisper.json comes from
// tools/record_faster_whisper.py (greedy, beam 1, temperature 0, with and without timestamps):
// faster-whisper's own transcripts, and CTranslate2's generate on the transformers log-mel
// (faster-whisper pads its log-mel with zeros past the audio, so near-ties can fall otherwise
// there; on the same features the ids must be equal). Skipped loudly without AF_MODELS.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "af/modalities/audio.hpp"
#include "af/modalities/log_mel.hpp"
#include "af/models/whisper.hpp"
#include "af/models/whisper_generate.hpp"
#include "test_util.hpp"

namespace af {
namespace {

const char kJfkSentence[] =
    "ask not what your country can do for you, ask what you can do for your country.";

// $AF_MODELS/whisper-<size>, or "" (with a loud message) when it is not there.
std::string real_model(const std::string& size) {
  const char* root = std::getenv("AF_MODELS");
  const std::string dir = root ? std::string(root) + "/whisper-" + size : "";
  if (dir.empty() || !std::filesystem::exists(dir + "/model.safetensors")) {
    std::fprintf(stderr,
                 "\n*** SKIPPED: no Whisper %s (run scripts/fetch_models.sh, set AF_MODELS) ***\n",
                 size.c_str());
    return "";
  }
  return dir;
}

#define AF_REQUIRE_REAL_WHISPER(var, size)  \
  const std::string var = real_model(size); \
  if (var.empty()) GTEST_SKIP() << "AF_MODELS has no Whisper " << (size)

std::string clip_path(const std::string& clip) { return test::testdata_dir() + "/audio/" + clip; }

test::ShellResult transcribe(const std::string& model, const std::string& clip,
                             const std::string& extra) {
  return test::run_shell(std::string(AF_CLI_PATH) + " transcribe -m '" + model + "' --audio '" +
                         clip_path(clip) + "' -t 2 " + extra);
}

TEST(WhisperRealModels, TinyEnTranscribesJfk) {
  AF_REQUIRE_REAL_WHISPER(dir, "tiny");
  AF_REQUIRE_TESTDATA(clip_path("jfk_16k.wav"));
  const test::ShellResult r = transcribe(dir, "jfk_16k.wav", "");
  ASSERT_EQ(r.status, 0);
  EXPECT_EQ(r.out, std::string("And so my fellow Americans ") + kJfkSentence + "\n");
}

// Base is multilingual: with no --language it detects English (as faster-whisper does) and
// prompts <|en|><|transcribe|>; without the task token (a converted generation_config.json
// without forced_decoder_ids) it repeated "Americans" up to max_length.
TEST(WhisperRealModels, BaseDetectsEnglishAndTranscribesJfk) {
  AF_REQUIRE_REAL_WHISPER(dir, "base");
  AF_REQUIRE_TESTDATA(clip_path("jfk_16k.wav"));
  const test::ShellResult r = transcribe(dir, "jfk_16k.wav", "--output-format json");
  ASSERT_EQ(r.status, 0);
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["language"], "en");  // verbose_json names the language by its code
  EXPECT_EQ(j["text"], std::string("And so my fellow Americans, ") + kJfkSentence);
}

// Ids of every clip, with and without timestamps, equal CTranslate2's on the same features;
// where faster-whisper's own features gave the same ids, its words are ours too.
void expect_ids_equal_ctranslate2(const std::string& size) {
  AF_REQUIRE_REAL_WHISPER(dir, size);
  const auto fixture = nlohmann::json::parse(
      test::read_text(test::fixtures_dir() + "/whisper/faster_whisper.json"))["models"][size];
  models::LoadOptions options;
  options.num_threads = 2;
  auto model = models::Whisper::load(dir, options);
  const auto config = models::WhisperGenerationConfig::load(dir);
  const modalities::LogMelExtractor extractor(modalities::LogMelConfig::load(dir));
  int same_as_faster_whisper = 0;
  for (const auto& [clip, runs] : fixture.items()) {
    AF_REQUIRE_TESTDATA(clip_path(clip));
    const modalities::LogMel mel =
        extractor.compute(modalities::Audio::load(clip_path(clip)).samples());
    for (const auto& [mode, run] : runs.items()) {
      models::WhisperGenerateOptions o;
      o.timestamps = mode == "timestamps";
      const models::WhisperGeneration g = models::whisper_generate(*model, mel.data, config, o);
      std::vector<int32_t> ids = g.tokens;
      if (!ids.empty() && ids.back() == config.eos_token_id) ids.pop_back();
      EXPECT_EQ(g.prompt, run["same_features"]["prompt"].get<std::vector<int32_t>>())
          << size << " " << clip << " " << mode;
      EXPECT_EQ(ids, run["same_features"]["ids"].get<std::vector<int32_t>>())
          << size << " " << clip << " " << mode;
      if (run["ids"] == run["same_features"]["ids"]) {
        EXPECT_EQ(ids, run["ids"].get<std::vector<int32_t>>())
            << size << " " << clip << " " << mode;
        ++same_as_faster_whisper;
      }
    }
  }
  std::fprintf(stderr, "whisper %s: %d of %zu runs equal faster-whisper's ids end to end\n",
               size.c_str(), same_as_faster_whisper, 2 * fixture.size());
}

TEST(WhisperRealModels, TinyEnIdsEqualCTranslate2) { expect_ids_equal_ctranslate2("tiny"); }
TEST(WhisperRealModels, BaseIdsEqualCTranslate2) { expect_ids_equal_ctranslate2("base"); }

}  // namespace
}  // namespace af
