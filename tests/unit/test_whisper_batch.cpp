// Whisper windows decoded side by side (Whisper::decode_step, whisper_decode_windows, and
// WhisperTranscribeOptions::batch_windows for faster-whisper's windows without timestamps): the
// same logits, tokens and segments, bit for bit, as one window at a time, on the tiny_ts model.
#include <gtest/gtest.h>

#include <span>
#include <string>
#include <utility>
#include <vector>

#include "af/core/error.hpp"
#include "af/modalities/audio.hpp"
#include "af/modalities/log_mel.hpp"
#include "af/models/whisper.hpp"
#include "af/models/whisper_generate.hpp"
#include "af/models/whisper_transcribe.hpp"
#include "test_util.hpp"

namespace af::models {
namespace {

std::string ts_dir() { return test::fixtures_dir() + "/whisper/tiny_ts"; }
std::string clip(const std::string& name) { return test::testdata_dir() + "/audio/" + name; }

std::vector<float> samples_of(const std::string& name) {
  return modalities::Audio::load(clip(name)).samples();
}

// The 30 s log-mel input of a clip.
std::vector<float> mel_of(const std::string& name) {
  const modalities::LogMelExtractor fe(modalities::LogMelConfig::load(ts_dir()));
  return fe.compute(samples_of(name)).data;
}

TEST(WhisperBatch, DecodeStepEqualsEachStateAlone) {
  AF_REQUIRE_TESTDATA(clip("jfk_16k.wav"));
  auto model = Whisper::load(ts_dir());
  WhisperState a = model->start(model->encode(mel_of("jfk_16k.wav")));
  WhisperState b = model->start(model->encode(mel_of("speech_fox_16k.wav")));
  const std::vector<int32_t> prompt_a{101, 5, 7}, prompt_b{101};
  model->decode(a, prompt_a, false);
  model->decode(b, prompt_b, false);  // a different position from a's
  WhisperState a_alone = a, b_alone = b;
  const size_t vocab = size_t(model->config().vocab_size);
  for (const auto& [id_a, id_b] : {std::pair{11, 12}, std::pair{40, 3}}) {
    WhisperState* both[] = {&a, &b};
    const int32_t ids[] = {id_a, id_b};
    const std::vector<float> step = model->decode_step(both, ids);
    ASSERT_EQ(step.size(), 2 * vocab);
    EXPECT_EQ(std::vector<float>(step.begin(), step.begin() + std::ptrdiff_t(vocab)),
              model->decode(a_alone, std::span(&id_a, 1), false));
    EXPECT_EQ(std::vector<float>(step.begin() + std::ptrdiff_t(vocab), step.end()),
              model->decode(b_alone, std::span(&id_b, 1), false));
  }
  EXPECT_EQ(a.n_past, 5);
  EXPECT_EQ(b.n_past, 3);
  EXPECT_EQ(a.self_k, a_alone.self_k);
  EXPECT_EQ(b.self_v, b_alone.self_v);
}

TEST(WhisperBatch, DecodeStepRefusesBadStates) {
  AF_REQUIRE_TESTDATA(clip("jfk_16k.wav"));
  auto model = Whisper::load(ts_dir());
  WhisperState a = model->start(model->encode(mel_of("jfk_16k.wav")));
  WhisperState* twice[] = {&a, &a};
  const int32_t two[] = {101, 101};
  EXPECT_THROW(model->decode_step(twice, two), Error);
  WhisperState* one[] = {&a};
  EXPECT_THROW(model->decode_step(one, two), Error);  // 2 ids for 1 state
  WhisperState empty;
  WhisperState* unstarted[] = {&empty};
  EXPECT_THROW(model->decode_step(unstarted, std::span(two, 1)), Error);
  a.n_past = model->config().max_target_positions;
  try {
    model->decode_step(one, std::span(two, 1));
    ADD_FAILURE() << "no error past max_target_positions";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kOutOfRange);
  }
}

void expect_same(const WhisperTranscription& x, const WhisperTranscription& y) {
  EXPECT_EQ(x.tokens, y.tokens);
  EXPECT_EQ(x.text, y.text);
  ASSERT_EQ(x.segments.size(), y.segments.size());
  for (size_t i = 0; i < x.segments.size(); ++i) {
    SCOPED_TRACE(i);
    const WhisperSegment &s = x.segments[i], &t = y.segments[i];
    EXPECT_EQ(s.tokens, t.tokens);
    EXPECT_EQ(s.seek, t.seek);
    EXPECT_EQ(s.start, t.start);
    EXPECT_EQ(s.end, t.end);
    EXPECT_EQ(s.avg_logprob, t.avg_logprob);
    EXPECT_EQ(s.no_speech_prob, t.no_speech_prob);
    EXPECT_EQ(s.compression_ratio, t.compression_ratio);
    EXPECT_EQ(s.temperature, t.temperature);
  }
}

// Three windows (70 s: the clips and silences, repeated), in batches of 2 and 1.
TEST(WhisperBatch, SideBySideWindowsEqualOneAtATime) {
  AF_REQUIRE_TESTDATA(clip("jfk_16k.wav"));
  std::vector<float> unit = samples_of("jfk_16k.wav");
  for (const char* name : {"speech_alice_16k.wav", "speech_fox_16k.wav"}) {
    unit.resize(unit.size() + 16000, 0.0f);
    const std::vector<float> more = samples_of(name);
    unit.insert(unit.end(), more.begin(), more.end());
  }
  std::vector<float> audio;
  while (audio.size() < 70 * 16000) audio.insert(audio.end(), unit.begin(), unit.end());
  audio.resize(70 * 16000);
  auto t = WhisperTranscriber::load(ts_dir());
  WhisperTranscribeOptions o;
  o.features = WhisperFeatures::kFasterWhisper;
  o.max_new_tokens = 12;  // the random model rarely ends a window itself
  o.batch_windows = 1;
  std::vector<int64_t> seeks;
  const auto windows = [&](const WhisperProgress& p) {
    seeks.push_back(p.seek);
    return true;
  };
  const WhisperTranscription alone = t->transcribe_samples(audio, o, windows);
  EXPECT_EQ(seeks, (std::vector<int64_t>{3000, 6000, 7000}));
  ASSERT_FALSE(alone.segments.empty());
  o.batch_windows = 2;
  expect_same(t->transcribe_samples(audio, o), alone);
  // Temperature fallback (every attempt's average log-probability is below 0, so every window
  // tries both and keeps the better): the first attempts side by side, the later ones window by
  // window.
  o.temperatures = {0.0, 0.7};
  o.logprob_threshold = -1e-9;
  o.batch_windows = 1;
  const WhisperTranscription fell = t->transcribe_samples(audio, o);
  ASSERT_FALSE(fell.segments.empty());
  for (const WhisperSegment& s : fell.segments) EXPECT_EQ(s.temperature, 0.7);  // all fell back
  o.batch_windows = 4;
  expect_same(t->transcribe_samples(audio, o), fell);
}

}  // namespace
}  // namespace af::models
