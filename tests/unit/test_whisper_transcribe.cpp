// models::WhisperTranscriber against transformers' sequential long-form generate on the tiny_ts
// model (tests/fixtures/whisper/tiny_longform.json, tools/make_whisper_fixtures.py): ids and
// segments for a ~32 s input, streamed from a file or given as samples; the long-form log-mel
// pieces against the 30 s extractor; the output formats.
#include <gtest/gtest.h>
#include <sndfile.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "af/core/error.hpp"
#include "af/io/model_files.hpp"
#include "af/modalities/audio.hpp"
#include "af/modalities/log_mel.hpp"
#include "af/models/whisper_transcribe.hpp"
#include "af/tokenizer/tokenizer.hpp"
#include "test_util.hpp"

namespace af::models {
namespace {

std::string ts_dir() { return test::fixtures_dir() + "/whisper/tiny_ts"; }
std::string clip(const std::string& name) { return test::testdata_dir() + "/audio/" + name; }

nlohmann::json reference() {
  return io::read_json_file(test::fixtures_dir() + "/whisper/tiny_longform.json");
}

// The fixture's long input: the int16 clips (x / 32768, as the generator reads them) and
// silences joined.
std::vector<float> long_input(const nlohmann::json& clips) {
  std::vector<float> out;
  for (const auto& item : clips) {
    if (item.is_string()) {
      const auto audio = modalities::Audio::load(clip(item.get<std::string>()));
      out.insert(out.end(), audio.samples().begin(), audio.samples().end());
    } else {
      out.resize(out.size() + size_t(item.get<double>() * 16000), 0.0f);
    }
  }
  return out;
}

WhisperTranscribeOptions options_of(const nlohmann::json& o) {
  WhisperTranscribeOptions t;
  t.language = o.value("language", "");
  t.timestamps = true;
  t.condition_on_prev_tokens = o.value("condition_on_prev_tokens", false);
  if (o.contains("prompt_ids")) t.prompt_ids = o["prompt_ids"].get<std::vector<int32_t>>();
  if (o.contains("no_speech_threshold")) t.no_speech_threshold = o["no_speech_threshold"];
  if (o.contains("logprob_threshold")) t.logprob_threshold = o["logprob_threshold"];
  return t;
}

void expect_equal(const WhisperTranscription& r, const nlohmann::json& c) {
  EXPECT_EQ(r.tokens, c["ids"].get<std::vector<int32_t>>());
  ASSERT_EQ(r.segments.size(), c["segments"].size());
  for (size_t i = 0; i < r.segments.size(); ++i) {
    SCOPED_TRACE(i);
    const auto& e = c["segments"][i];
    EXPECT_EQ(r.segments[i].tokens, e["tokens"].get<std::vector<int32_t>>());
    EXPECT_NEAR(r.segments[i].start, e["start"].get<double>(), 1e-9);
    EXPECT_NEAR(r.segments[i].end, e["end"].get<double>(), 1e-9);
    EXPECT_EQ(r.segments[i].id, int64_t(i));
  }
}

TEST(WhisperTranscribe, LongFormEqualsTransformersGenerate) {
  AF_REQUIRE_TESTDATA(clip("jfk_16k.wav"));
  const nlohmann::json ref = reference();
  const std::vector<float> long_samples = long_input(ref["clips"]);
  ASSERT_EQ(long_samples.size(), ref["samples"].get<size_t>());
  const std::vector<float> jfk = modalities::Audio::load(clip("jfk_16k.wav")).samples();
  auto t = WhisperTranscriber::load(ts_dir());
  int cases = 0, seeks_inside_window = 0;
  for (const auto& [name, c] : ref["cases"].items()) {
    SCOPED_TRACE(name);
    const bool is_long = c["input"] == "long";
    const WhisperTranscription r =
        t->transcribe_samples(is_long ? long_samples : jfk, options_of(c["options"]));
    expect_equal(r, c);
    for (const auto& s : r.segments) seeks_inside_window += s.seek % 3000 != 0;
    EXPECT_NEAR(r.duration, double((is_long ? long_samples : jfk).size()) / 16000, 1e-12);
    ++cases;
  }
  EXPECT_EQ(cases, 5);
  EXPECT_GT(seeks_inside_window, 0);  // windows started at a closed segment's timestamp
}

std::string write_wav(const std::vector<float>& samples, const std::string& name) {
  const std::string path = testing::TempDir() + "/" + name;
  SF_INFO info{};
  info.samplerate = 16000;
  info.channels = 1;
  info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
  SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
  EXPECT_NE(f, nullptr) << sf_strerror(nullptr);
  // The samples are int16 / 32768: written back as the same integers.
  sf_command(f, SFC_SET_NORM_FLOAT, nullptr, SF_TRUE);
  sf_write_float(f, samples.data(), sf_count_t(samples.size()));
  sf_close(f);
  return path;
}

TEST(WhisperTranscribe, StreamedFileEqualsSamples) {
  AF_REQUIRE_TESTDATA(clip("jfk_16k.wav"));
  const nlohmann::json ref = reference();
  const std::vector<float> samples = long_input(ref["clips"]);
  const std::string path = write_wav(samples, "whisper_long.wav");
  auto t = WhisperTranscriber::load(ts_dir());
  const auto& c = ref["cases"]["long_detect_condition"];
  const WhisperTranscription r = t->transcribe_file(path, options_of(c["options"]));
  expect_equal(r, c);
  EXPECT_FALSE(r.text.empty());
  EXPECT_EQ(r.language, "de");  // detected on the first window (transformers prompts <|de|>)
  std::filesystem::remove(path);
}

TEST(WhisperTranscribe, AudioStreamEqualsAudioLoad) {
  AF_REQUIRE_TESTDATA(clip("speech_fox_16k.wav"));
  const std::string path = clip("speech_fox_16k.wav");
  const std::vector<float> whole = modalities::Audio::load(path).samples();
  auto stream = modalities::AudioStream::open(path);
  for (int pass = 0; pass < 2; ++pass) {
    std::vector<float> got, block(1000);
    for (size_t n; (n = stream->read(block)) > 0;)
      got.insert(got.end(), block.begin(), block.begin() + n);
    EXPECT_EQ(got, whole);
    stream->rewind();
  }
  EXPECT_THROW(modalities::AudioStream::open(test::fixtures_dir() + "/whisper/log_mel.json"),
               Error);
  EXPECT_THROW(modalities::AudioStream::open(testing::TempDir() + "/no_such.wav"), Error);
}

TEST(WhisperTranscribe, LogMelFramesEqualTheThirtySecondExtractor) {
  AF_REQUIRE_TESTDATA(clip("jfk_16k.wav"));
  const modalities::LogMelExtractor fe(modalities::LogMelConfig::load(ts_dir()));
  std::vector<float> x = modalities::Audio::load(clip("jfk_16k.wav")).samples();
  x.resize(size_t(fe.config().n_samples()), 0.0f);  // exactly 30 s: no padding difference
  const modalities::LogMel whole = fe.compute(x);
  const int64_t total = int64_t(x.size()), frames = total / fe.config().hop_length;
  const std::vector<double> mel = fe.log10_frames(x, 0, total, 0, frames);
  double max = -1e300;
  for (double v : mel) max = std::max(max, v);
  EXPECT_EQ(modalities::LogMelExtractor::finish(mel, max), whole.data);
  // A block of frames from only the samples frame_span names gives the same values.
  const auto [begin, end] = fe.frame_span(total, 1000, 700);
  const std::vector<float> part(x.begin() + begin, x.begin() + end);
  const std::vector<double> piece = fe.log10_frames(part, begin, total, 1000, 700);
  for (int64_t m = 0; m < 80; m += 7) {
    for (int64_t t = 0; t < 700; t += 13) {
      ASSERT_EQ(piece[size_t(m * 700 + t)], mel[size_t(m * frames + 1000 + t)]);
    }
  }
  // The last frames reflect at the end.
  const auto [b2, e2] = fe.frame_span(total, frames - 5, 5);
  EXPECT_EQ(e2, total);
  const std::vector<float> tail(x.begin() + b2, x.end());
  const std::vector<double> last = fe.log10_frames(tail, b2, total, frames - 5, 5);
  EXPECT_EQ(last[4], mel[size_t(frames - 1)]);
}

TEST(WhisperTranscribe, FormatsAndOptions) {
  AF_REQUIRE_TESTDATA(clip("jfk_16k.wav"));
  auto t = WhisperTranscriber::load(ts_dir());
  const std::vector<float> jfk = modalities::Audio::load(clip("jfk_16k.wav")).samples();
  WhisperTranscribeOptions o;
  o.language = "en";
  o.timestamps = true;
  const WhisperTranscription r = t->transcribe_samples(jfk, o);
  ASSERT_FALSE(r.segments.empty());
  const auto v = nlohmann::json::parse(format_transcription(r, "verbose_json"));
  for (const char* key : {"task", "language", "duration", "text", "segments"}) {
    EXPECT_TRUE(v.contains(key)) << key;
  }
  for (const char* key : {"id", "seek", "start", "end", "text", "tokens", "temperature",
                          "avg_logprob", "compression_ratio", "no_speech_prob"}) {
    EXPECT_TRUE(v["segments"][0].contains(key)) << key;
  }
  EXPECT_LT(v["segments"][0]["avg_logprob"].get<double>(), 0.0);
  EXPECT_GT(v["segments"][0]["no_speech_prob"].get<double>(), 0.0);
  EXPECT_GT(v["segments"][0]["compression_ratio"].get<double>(), 0.0);
  EXPECT_EQ(format_transcription(r, "srt").rfind("1\n00:00:00,", 0), 0u);
  EXPECT_EQ(format_transcription(r, "vtt").rfind("WEBVTT\n\n00:00:00.", 0), 0u);
  EXPECT_EQ(nlohmann::json::parse(format_transcription(r, "json"))["text"], v["text"]);
  EXPECT_THROW(format_transcription(r, "xml"), Error);
  // A text prompt goes in after <|startofprev|> (suppress_tokens[-2] = 7 here).
  o.initial_prompt = "  the cat ";
  o.condition_on_prev_tokens = true;
  const WhisperTranscription prompted = t->transcribe_samples(jfk, o);
  o.initial_prompt.clear();
  o.prompt_ids = {7};
  for (int32_t id : t->tokenizer()->encode(" the cat", false)) o.prompt_ids.push_back(id);
  EXPECT_EQ(t->transcribe_samples(jfk, o).tokens, prompted.tokens);
  o.temperatures = {-0.5};
  EXPECT_THROW(t->transcribe_samples(jfk, o), Error);
  o.temperatures.clear();
  EXPECT_THROW(t->transcribe_samples(jfk, o), Error);
  o.temperatures = {0.0, 0.5};
  o.best_of = 0;
  EXPECT_THROW(t->transcribe_samples(jfk, o), Error);
  o.best_of = 1;
  o.search.beam_size = 100;
  EXPECT_THROW(t->transcribe_samples(jfk, o), Error);
}

// Temperature fallback (openai-whisper / faster-whisper): a window decoded at temperature 0
// passes thresholds it meets; one that fails at every temperature keeps the attempt with the
// best average log-probability, reported with the last temperature; samples are reproducible
// from the seed and differ between seeds. Before, any temperature but 0 was refused.
TEST(WhisperTranscribe, TemperatureFallback) {
  AF_REQUIRE_TESTDATA(clip("jfk_16k.wav"));
  auto t = WhisperTranscriber::load(ts_dir());
  const std::vector<float> jfk = modalities::Audio::load(clip("jfk_16k.wav")).samples();
  WhisperTranscribeOptions o;
  o.language = "en";
  o.max_new_tokens = 16;
  const WhisperTranscription greedy = t->transcribe_samples(jfk, o);
  o.temperatures = {0.0, 0.4, 0.8};
  o.compression_ratio_threshold = 1000.0;  // always met: temperature 0 is kept
  o.logprob_threshold = -1000.0;
  EXPECT_EQ(t->transcribe_samples(jfk, o).tokens, greedy.tokens);
  o.compression_ratio_threshold = 0.01;  // never met: every temperature is tried
  o.best_of = 3;
  const WhisperTranscription fell = t->transcribe_samples(jfk, o);
  ASSERT_FALSE(fell.segments.empty());
  EXPECT_EQ(fell.segments[0].temperature, 0.8);
  EXPECT_EQ(t->transcribe_samples(jfk, o).tokens, fell.tokens);  // same seed, same samples
  // Sampling alone: reproducible per seed, and seeds give different samples.
  o.temperatures = {1.0};
  o.compression_ratio_threshold.reset();
  o.logprob_threshold.reset();
  o.best_of = 1;
  std::vector<std::vector<int32_t>> samples;
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    o.seed = seed;
    samples.push_back(t->transcribe_samples(jfk, o).tokens);
    EXPECT_EQ(t->transcribe_samples(jfk, o).tokens, samples.back());
  }
  int distinct = 0;
  for (size_t i = 1; i < samples.size(); ++i) distinct += samples[i] != samples[0];
  EXPECT_GE(distinct, 1);
}

}  // namespace
}  // namespace af::models
