// Whisper word timestamps, piece by piece (src/models/whisper_align.*): CTranslate2's median
// filter and negative DTW (expected values from a line-by-line Python port of its C++), the
// cross-attention scores decode records against q.k computed directly, faster-whisper's word
// splitting and punctuation merging (Python's substring semantics included), Python's round(x, 2),
// alignment_heads in generation_config.json, clear errors without them, and the words of a
// transcription of the tiny random model holding exactly its text in time order.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "af/backend/key_cache.hpp"
#include "af/core/error.hpp"
#include "af/modalities/audio.hpp"
#include "af/models/whisper_transcribe.hpp"
#include "af/tokenizer/tokenizer.hpp"
#include "models/whisper_align.hpp"
#include "test_util.hpp"

namespace af::models {
namespace {

std::string ts_dir() { return test::fixtures_dir() + "/whisper/tiny_ts"; }

TEST(WhisperAlign, MedianFilterReflectsAtTheEdges) {
  const std::vector<float> x = {1, 5, 2, 8, 3, 9, 4, 0, 0, 0, 0, 0, 0, 7};
  const std::vector<float> y = whisper_median_filter(x, 2, 7, 3);
  EXPECT_EQ(y, (std::vector<float>{5, 2, 5, 3, 8, 4, 9, 0, 0, 0, 0, 0, 0, 0}));
  // Rows no longer than half the width are left as they are (CTranslate2's pass-through).
  EXPECT_EQ(whisper_median_filter(x, 7, 2, 7), x);
}

TEST(WhisperAlign, NegativeDtwFollowsCTranslate2) {
  using Path = std::vector<std::pair<int64_t, int64_t>>;
  const std::vector<float> a = {1, 1, 0, 0, 0, 0, 1, 1};
  EXPECT_EQ(whisper_negative_dtw(a, 2, 4), (Path{{0, 0}, {0, 1}, {1, 1}, {1, 2}, {1, 3}}));
  const std::vector<float> b = {0.9f, 0.1f, 0.2f, 0.0f, 0.1f, 0.1f, 0.8f, 0.7f,
                                0.1f, 0.0f, 0.0f, 0.1f, 0.2f, 0.9f, 0.8f};
  EXPECT_EQ(whisper_negative_dtw(b, 3, 5),
            (Path{{0, 0}, {1, 0}, {1, 1}, {1, 2}, {2, 2}, {2, 3}, {2, 4}}));
}

TEST(WhisperAlign, CrossScoresAreScaledDotProducts) {
  const int64_t heads = 3, hd = 5, positions = 37, m = 2;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> q(size_t(m * heads * hd)), rows(size_t(positions * heads * hd));
  for (float& v : q) v = u(rng);
  for (float& v : rows) v = u(rng);
  std::vector<float> keys(size_t(key_cache_floats(positions, heads, hd)));
  store_keys(keys.data(), rows.data(), positions, 0, heads, hd);
  WhisperCrossScores cross;
  cross.heads = {{0, 2}, {1, 0}, {0, 1}};
  const float scale = 0.25f;
  cross.record(0, q.data(), keys.data(), m, heads, hd, positions, scale);
  ASSERT_EQ(cross.scores.size(), size_t(3 * m * positions));
  for (size_t i : {0, 2}) {
    const int64_t h = cross.heads[i].second;
    for (int64_t t = 0; t < m; ++t) {
      for (int64_t p = 0; p < positions; ++p) {
        double want = 0;
        for (int64_t d = 0; d < hd; ++d) {
          want += double(q[size_t(t * heads * hd + h * hd + d)] * scale) *
                  rows[size_t(p * heads * hd + h * hd + d)];
        }
        EXPECT_NEAR(cross.scores[size_t((int64_t(i) * m + t) * positions + p)], want, 1e-5);
      }
    }
  }
  // Layer 1's head is not recorded by layer 0's call.
  EXPECT_EQ(cross.scores[size_t(1 * m * positions)], 0.0f);
}

TEST(WhisperAlign, SplitsWordsAtSpacesAndPunctuation) {
  auto tokenizer = tok::Tokenizer::load(ts_dir());
  // " the" " " c a t "," " a" " " d o g "." eot (tiny_ts's vocabulary).
  const std::vector<int32_t> ids = {0, 70, 10, 8, 27, 72, 1, 70, 11, 22, 14, 71, 100};
  std::vector<std::string> words;
  std::vector<std::vector<int32_t>> tokens;
  whisper_split_words(*tokenizer, 100, ids, "en", words, tokens);
  EXPECT_EQ(words, (std::vector<std::string>{" the", " cat", ",", " a", " dog", ".", ""}));
  EXPECT_EQ(tokens, (std::vector<std::vector<int32_t>>{
                        {0}, {70, 10, 8, 27}, {72}, {1}, {70, 11, 22, 14}, {71}, {100}}));
  // Languages written without spaces split at every whole character.
  words.clear(), tokens.clear();
  whisper_split_words(*tokenizer, 100, ids, "ja", words, tokens);
  EXPECT_EQ(words.size(), ids.size());
}

TEST(WhisperAlign, MergesPunctuationAsFasterWhisper) {
  const auto timing = [](const char* w, int32_t id) {
    return WhisperWordTiming{w, {id}, 0.0, 0.0, 0.0};
  };
  std::vector<WhisperWordTiming> a = {timing(" \"", 1), timing("Hello", 2), timing(",", 3),
                                      timing(" world", 4), timing(".", 5)};
  whisper_merge_punctuations(a, "\"'\u201c\u00bf([{-",
                             "\"'.\u3002,\uff0c!\uff01?\uff1f:\uff1a\u201d)]}\u3001");
  std::vector<std::string> words;
  for (const auto& w : a) words.push_back(w.word);
  EXPECT_EQ(words, (std::vector<std::string>{"", " \"Hello,", "", " world.", ""}));
  EXPECT_EQ(a[1].tokens, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(a[3].tokens, (std::vector<int32_t>{4, 5}));
  // Python's `in` is a substring test: a lone space strips to "", which every string holds.
  std::vector<WhisperWordTiming> b = {timing(" ", 1), timing(" x", 2)};
  whisper_merge_punctuations(b, "-", "");
  EXPECT_EQ(b[0].word, "");
  EXPECT_EQ(b[1].word, "  x");
}

TEST(WhisperAlign, RoundsAsPython) {
  EXPECT_EQ(whisper_round2(0.125), 0.12);
  EXPECT_EQ(whisper_round2(0.375), 0.38);
  EXPECT_EQ(whisper_round2(2.675), 2.67);
  EXPECT_EQ(whisper_round2(1.005), 1.0);
  EXPECT_EQ(whisper_round2(10.235), 10.23);
}

TEST(WhisperAlign, AlignmentHeadsFromGenerationConfig) {
  const auto c = WhisperGenerationConfig::from_json(
      nlohmann::json::parse(
          R"({"decoder_start_token_id": 1, "alignment_heads": [[1, 0], [3, 2]]})"),
      "test");
  EXPECT_EQ(c.alignment_heads, (std::vector<std::pair<int64_t, int64_t>>{{1, 0}, {3, 2}}));
  for (const char* bad : {R"({"decoder_start_token_id": 1, "alignment_heads": [[1]]})",
                          R"({"decoder_start_token_id": 1, "alignment_heads": [[1, -2]]})",
                          R"({"decoder_start_token_id": 1, "alignment_heads": 3})"}) {
    try {
      WhisperGenerationConfig::from_json(nlohmann::json::parse(bad), "gen.json");
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kFormat) << bad;
      EXPECT_NE(std::string(e.what()).find("alignment_heads"), std::string::npos) << e.what();
    }
  }
}

TEST(WhisperAlign, ClearErrorsWithoutHeadsOrTokenizer) {
  auto t = WhisperTranscriber::load(ts_dir());
  WhisperGenerationConfig c = t->generation_config();
  WhisperState state = t->model().start(std::vector<float>(
      size_t(t->model().config().max_source_positions * t->model().config().d_model), 0.0f));
  const std::vector<int32_t> start = {101}, text = {0, 1};
  c.alignment_heads.clear();
  try {
    whisper_align_tokens(t->model(), state, c, start, text, 3000);
    ADD_FAILURE() << "no alignment heads";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("alignment_heads"), std::string::npos) << e.what();
  }
  c.alignment_heads = {{2, 0}};  // tiny_ts has 2 decoder layers
  EXPECT_THROW(whisper_align_tokens(t->model(), state, c, start, text, 3000), Error);
  // The tiny fixture has no tokenizer.json: words cannot be split.
  auto no_tokenizer = WhisperTranscriber::load(test::fixtures_dir() + "/whisper/tiny");
  WhisperTranscribeOptions o;
  o.word_timestamps = true;
  const std::vector<float> second(16000, 0.0f);
  EXPECT_THROW(no_tokenizer->transcribe_samples(second, o), Error);
}

// The tiny random model's words: in time order, inside the audio, with probabilities (its
// text is random; the real models' words are checked against faster-whisper in tests/e2e).
TEST(WhisperAlign, WordsInTimeOrderInsideTheAudio) {
  AF_REQUIRE_TESTDATA(test::testdata_dir() + "/audio/speech_fox_16k.wav");
  auto t = WhisperTranscriber::load(ts_dir());
  const auto audio = modalities::Audio::load(test::testdata_dir() + "/audio/speech_fox_16k.wav");
  WhisperTranscribeOptions o;
  o.features = WhisperFeatures::kFasterWhisper;
  o.timestamps = true;
  o.word_timestamps = true;
  o.language = "en";
  o.max_new_tokens = 12;
  const WhisperTranscription r = t->transcribe_samples(audio.samples(), o);
  ASSERT_FALSE(r.segments.empty());
  size_t words = 0;
  double last_start = 0.0;
  for (const WhisperSegment& s : r.segments) {
    for (const WhisperWord& w : s.words) {
      EXPECT_FALSE(w.word.empty());
      EXPECT_LE(w.start, w.end) << w.word;
      EXPECT_GE(w.start, last_start) << w.word;
      EXPECT_LE(w.end, r.duration + 0.02) << w.word;
      EXPECT_TRUE(w.probability > 0.0 && w.probability <= 1.0) << w.probability;
      last_start = w.start;
    }
    words += s.words.size();
  }
  EXPECT_GT(words, 0u);
}

}  // namespace
}  // namespace af::models
