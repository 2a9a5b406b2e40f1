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
#include "af/models/whisper_transcribe.hpp"
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

// Python's str.strip() of faster-whisper's joined text.
std::string trimmed(const std::string& s) {
  const char* space = " \t\n\r\f\v";
  const size_t a = s.find_first_not_of(space);
  return a == std::string::npos ? "" : s.substr(a, s.find_last_not_of(space) - a + 1);
}

void expect_run_equal(const models::WhisperTranscription& r, const nlohmann::json& run,
                      const std::string& what) {
  EXPECT_EQ(r.tokens, run["ids"].get<std::vector<int32_t>>()) << what;
  EXPECT_EQ(trimmed(r.text), run["text"].get<std::string>()) << what;
  if (!r.language.empty()) {  // tiny.en has no language token; faster-whisper says "en"
    EXPECT_EQ(r.language, run["language"].get<std::string>()) << what;
  }
  ASSERT_EQ(r.segments.size(), run["segments"].size()) << what;
  for (size_t i = 0; i < r.segments.size(); ++i) {
    EXPECT_NEAR(r.segments[i].start, run["segments"][i]["start"].get<double>(), 0.006) << what;
    EXPECT_NEAR(r.segments[i].end, run["segments"][i]["end"].get<double>(), 0.006) << what;
    EXPECT_EQ(trimmed(r.segments[i].text), run["segments"][i]["text"].get<std::string>()) << what;
  }
}

// With --features faster-whisper (log-mel padded with zeros, faster-whisper's window loop and
// previous-text prompt), every clip and the ~38 s concatenation give faster-whisper's own ids,
// text and segments, with and without timestamps, greedy and with 5 beams. On 8839ed4, 5 of
// the 12 greedy clip runs did (transformers pads the audio, not the log-mel, and commas and
// last timestamps tip over) and there was no beam search.
void expect_transcripts_equal_faster_whisper(const std::string& size) {
  AF_REQUIRE_REAL_WHISPER(dir, size);
  const auto fixture =
      nlohmann::json::parse(test::read_text(test::fixtures_dir() + "/whisper/faster_whisper.json"));
  models::LoadOptions load;
  load.num_threads = 2;
  auto transcriber = models::WhisperTranscriber::load(dir, load);
  models::WhisperTranscribeOptions o;
  o.features = models::WhisperFeatures::kFasterWhisper;
  o.condition_on_prev_tokens = true;  // faster-whisper's default
  for (const auto& [clip, runs] : fixture["models"][size].items()) {
    AF_REQUIRE_TESTDATA(clip_path(clip));
    for (const auto& [mode, run] : runs.items()) {
      o.timestamps = mode == "timestamps";
      expect_run_equal(transcriber->transcribe_file(clip_path(clip), o), run,
                       size + " " + clip + " " + mode);
    }
  }
  // Beam search as faster-whisper's beam_size=5 (CTranslate2's; 6 of these 12 differ from greedy).
  o.search.beam_size = 5;
  for (const auto& [clip, runs] : fixture["beam5"][size].items()) {
    for (const auto& [mode, run] : runs.items()) {
      o.timestamps = mode == "timestamps";
      expect_run_equal(transcriber->transcribe_file(clip_path(clip), o), run,
                       size + " beam 5 " + clip + " " + mode);
    }
  }
  o.search.beam_size = 1;
  std::vector<float> joined;
  for (const auto& clip : fixture["long"]["clips"]) {
    const auto audio = modalities::Audio::load(clip_path(clip.get<std::string>()));
    joined.insert(joined.end(), audio.samples().begin(), audio.samples().end());
  }
  for (const auto& [mode, run] : fixture["long"][size].items()) {
    o.timestamps = mode == "timestamps";
    expect_run_equal(transcriber->transcribe_samples(joined, o), run, size + " long " + mode);
  }
}

TEST(WhisperRealModels, TinyEnTranscriptsEqualFasterWhisper) {
  expect_transcripts_equal_faster_whisper("tiny");
}
TEST(WhisperRealModels, BaseTranscriptsEqualFasterWhisper) {
  expect_transcripts_equal_faster_whisper("base");
}

}  // namespace
}  // namespace af
