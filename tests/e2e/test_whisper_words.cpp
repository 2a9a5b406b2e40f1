// Word timestamps on real Whisper weights (AF_MODELS; skipped loudly without them): tiny.en and
// base give faster-whisper's word_timestamps=True words on the shared clips: the same words and
// segments, times equal to 0.01 s and probabilities to 1e-3. The reference is
// tests/fixtures/whisper/faster_whisper_words.json from tools/record_faster_whisper_words.py
// (greedy, with and without timestamp tokens; without them the next window starts at the last
// word's end, so the clips' tails are decoded again as faster-whisper does).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "af/modalities/audio.hpp"
#include "af/models/whisper_transcribe.hpp"
#include "af/tokenizer/tokenizer.hpp"
#include "models/whisper_align.hpp"
#include "test_util.hpp"

namespace af {
namespace {

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

std::string clip_path(const std::string& clip) { return test::testdata_dir() + "/audio/" + clip; }

void expect_words_equal(const models::WhisperTranscription& r, const nlohmann::json& run,
                        const std::string& what) {
  EXPECT_EQ(r.tokens, run["ids"].get<std::vector<int32_t>>()) << what;
  ASSERT_EQ(r.segments.size(), run["segments"].size()) << what;
  for (size_t i = 0; i < r.segments.size(); ++i) {
    const models::WhisperSegment& s = r.segments[i];
    const nlohmann::json& want = run["segments"][i];
    const std::string at = what + " segment " + std::to_string(i);
    EXPECT_EQ(s.text, want["text"].get<std::string>()) << at;
    EXPECT_NEAR(s.start, want["start"].get<double>(), 0.005) << at;
    EXPECT_NEAR(s.end, want["end"].get<double>(), 0.005) << at;
    ASSERT_EQ(s.words.size(), want["words"].size()) << at;
    for (size_t k = 0; k < s.words.size(); ++k) {
      const nlohmann::json& w = want["words"][k];
      EXPECT_EQ(s.words[k].word, w["word"].get<std::string>()) << at << " word " << k;
      EXPECT_NEAR(s.words[k].start, w["start"].get<double>(), 0.005) << at << " word " << k;
      EXPECT_NEAR(s.words[k].end, w["end"].get<double>(), 0.005) << at << " word " << k;
      EXPECT_NEAR(s.words[k].probability, w["probability"].get<double>(), 1e-3)
          << at << " word " << k;
    }
  }
}

// CI time is short: by default a few runs that each prove something (tiny.en jfk with and without
// timestamp tokens, the latter with the tail windows after the last word; base jfk with the
// language and task tokens; tiny.en long-form); AF_WHISPER_WORDS_ALL=1 checks every recorded run.
bool all_runs() {
  const char* v = std::getenv("AF_WHISPER_WORDS_ALL");
  return v != nullptr && *v != '\0' && std::string(v) != "0";
}

bool in_quick_set(const std::string& size, const std::string& clip, const std::string& mode) {
  return clip == "jfk_16k.wav" && (size == "tiny" || mode == "timestamps");
}

void expect_words_equal_faster_whisper(const std::string& size, bool long_form) {
  if (long_form && size != "tiny" && !all_runs()) GTEST_SKIP() << "set AF_WHISPER_WORDS_ALL=1";
  const std::string dir = real_model(size);
  if (dir.empty()) GTEST_SKIP() << "AF_MODELS has no Whisper " << size;
  const auto fixture = nlohmann::json::parse(
      test::read_text(test::fixtures_dir() + "/whisper/faster_whisper_words.json"));
  models::LoadOptions load;
  load.num_threads = 2;
  auto transcriber = models::WhisperTranscriber::load(dir, load);
  models::WhisperTranscribeOptions o;
  o.features = models::WhisperFeatures::kFasterWhisper;
  o.condition_on_prev_tokens = true;  // faster-whisper's defaults
  o.no_speech_threshold = 0.6;        // (a clip's silent tail is skipped as no speech)
  o.logprob_threshold = -1.0;
  o.word_timestamps = true;
  if (long_form) {
    std::vector<float> joined;
    for (const auto& clip : fixture["long"]["clips"]) {
      AF_REQUIRE_TESTDATA(clip_path(clip.get<std::string>()));
      const auto audio = modalities::Audio::load(clip_path(clip.get<std::string>()));
      joined.insert(joined.end(), audio.samples().begin(), audio.samples().end());
    }
    o.timestamps = true;
    expect_words_equal(transcriber->transcribe_samples(joined, o),
                       fixture["long"][size]["timestamps"], size + " long");
    return;
  }
  for (const auto& [clip, runs] : fixture["models"][size].items()) {
    AF_REQUIRE_TESTDATA(clip_path(clip));
    for (const auto& [mode, run] : runs.items()) {
      if (!all_runs() && !in_quick_set(size, clip, mode)) continue;
      o.timestamps = mode == "timestamps";
      expect_words_equal(transcriber->transcribe_file(clip_path(clip), o), run,
                         size + " " + clip + " " + mode);
    }
  }
}

TEST(WhisperWordTimestamps, TinyEnClipsEqualFasterWhisper) {
  expect_words_equal_faster_whisper("tiny", false);
}
TEST(WhisperWordTimestamps, BaseClipsEqualFasterWhisper) {
  expect_words_equal_faster_whisper("base", false);
}
// About 38 s: several windows, each starting where the last one's words ended.
TEST(WhisperWordTimestamps, TinyEnLongFormEqualsFasterWhisper) {
  expect_words_equal_faster_whisper("tiny", true);
}
TEST(WhisperWordTimestamps, BaseLongFormEqualsFasterWhisper) {
  expect_words_equal_faster_whisper("base", true);
}

// Whisper base's tokenizer splits text tokens into words as faster-whisper's
// split_to_word_tokens: at spaces and punctuation ("en"; Python's strip and substring tests) or at
// whole characters ("ja"; tokens holding part of a UTF-8 character wait for the rest).
TEST(WhisperWordTimestamps, SplitWordsEqualFasterWhisper) {
  const std::string dir = real_model("base");
  if (dir.empty()) GTEST_SKIP() << "AF_MODELS has no Whisper base";
  const auto fixture = nlohmann::json::parse(
      test::read_text(test::fixtures_dir() + "/whisper/faster_whisper_words.json"));
  auto tokenizer = tok::Tokenizer::load(dir);
  const int32_t eot = models::WhisperGenerationConfig::load(dir).eos_token_id;
  for (const auto& entry : fixture["split"]) {
    std::vector<int32_t> ids = entry["ids"].get<std::vector<int32_t>>();
    ids.push_back(eot);
    for (const char* language : {"en", "ja"}) {
      std::vector<std::string> words;
      std::vector<std::vector<int32_t>> tokens;
      models::whisper_split_words(*tokenizer, eot, ids, language, words, tokens);
      EXPECT_EQ(words, entry[language]["words"].get<std::vector<std::string>>()) << language;
      EXPECT_EQ(tokens, entry[language]["tokens"].get<std::vector<std::vector<int32_t>>>())
          << language;
    }
  }
}

// af-cli transcribe --word-timestamps: json segments gain "words" with faster-whisper's keys; srt
// keeps one cue per segment. The tiny random model (its words are random; this checks the output).
TEST(WhisperWordTimestamps, CliJsonHasWordsPerSegment) {
  const std::string fox = clip_path("speech_fox_16k.wav");
  AF_REQUIRE_TESTDATA(fox);
  const std::string cli = std::string(AF_CLI_PATH) + " transcribe -m '" + test::fixtures_dir() +
                          "/whisper/tiny_ts' --audio '" + fox +
                          "' --features faster-whisper --timestamps --language en "
                          "--max-new-tokens 12 -t 2 --word-timestamps --output-format ";
  const test::ShellResult json = test::run_shell(cli + "json 2>&1");
  ASSERT_EQ(json.status, 0) << json.out;
  const auto r = nlohmann::json::parse(json.out);
  size_t words = 0, cues = 0;
  for (const auto& s : r["segments"]) {
    cues += s["text"].get<std::string>().find_first_not_of(' ') != std::string::npos;
    if (!s.contains("words")) continue;
    for (const auto& w : s["words"]) {
      ++words;
      ASSERT_EQ(w.size(), 4u) << w.dump();
      EXPECT_TRUE(w["word"].is_string() && w["start"].is_number() && w["end"].is_number() &&
                  w["probability"].is_number())
          << w.dump();
      EXPECT_LE(w["start"].get<double>(), w["end"].get<double>()) << w.dump();
    }
  }
  EXPECT_GT(words, 0u) << json.out;
  const test::ShellResult srt = test::run_shell(cli + "srt 2>&1");
  ASSERT_EQ(srt.status, 0) << srt.out;
  size_t arrows = 0;
  for (size_t at = srt.out.find(" --> "); at != std::string::npos;
       at = srt.out.find(" --> ", at + 1)) {
    ++arrows;
  }
  EXPECT_EQ(arrows, cues) << srt.out;
  // Without words the json has none.
  const std::string plain = cli.substr(0, cli.find(" --word-timestamps")) + " --output-format json";
  const test::ShellResult no_words = test::run_shell(plain + " 2>&1");
  ASSERT_EQ(no_words.status, 0) << no_words.out;
  EXPECT_EQ(no_words.out.find("\"words\""), std::string::npos) << no_words.out;
}

}  // namespace
}  // namespace af
