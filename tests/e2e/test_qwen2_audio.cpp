// Qwen2-Audio against transformers (tiny random fixture of tools/make_qwen2_audio_fixtures.py):
// audio token counts and features as Qwen2AudioProcessor + the model compute them, text logits
// at every position, greedy ids, and the bad inputs (no samples, silence, NaN, past 30 s).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "af/core/error.hpp"
#include "af/modalities/audio.hpp"
#include "af/models/multimodal.hpp"
#include "af/runtime/scheduler.hpp"
#include "af/runtime/session.hpp"
#include "af/tokenizer/tokenizer.hpp"
#include "test_util.hpp"

namespace af {
namespace {

std::string fixture() { return test::fixtures_dir() + "/models/qwen2_audio"; }

nlohmann::json reference() {
  std::ifstream in(fixture() + "/reference.json");
  return nlohmann::json::parse(in);
}

nlohmann::json clip(const std::string& name) {
  const nlohmann::json ref = reference();
  for (const nlohmann::json& c : ref["clips"])
    if (c["name"] == name) return c;
  ADD_FAILURE() << "no clip " << name;
  return {};
}

std::unique_ptr<models::MultimodalLM> load_model() {
  models::LoadOptions options;
  options.num_threads = 2;
  std::unique_ptr<models::CausalLM> lm = models::load(fixture(), options);
  auto* mm = dynamic_cast<models::MultimodalLM*>(lm.get());
  if (!mm) return nullptr;
  lm.release();
  return std::unique_ptr<models::MultimodalLM>(mm);
}

// The clip's audio: a shared 16 kHz file, or jfk_16k.wav three times (33 s) for "jfk_x3".
modalities::Audio clip_audio(const nlohmann::json& c) {
  const std::string source = c["source"];
  const std::string tag = "testdata:";
  if (source.rfind(tag, 0) == 0)
    return modalities::Audio::load(test::testdata_dir() + "/audio/" + source.substr(tag.size()));
  const modalities::Audio jfk =
      modalities::Audio::load(test::testdata_dir() + "/audio/jfk_16k.wav");
  std::vector<float> x;
  for (int i = 0; i < 3; ++i) x.insert(x.end(), jfk.samples().begin(), jfk.samples().end());
  return modalities::Audio::from_samples(std::move(x), 16000, "jfk_x3");
}

std::vector<float> reference_features(const nlohmann::json& c) {
  const int64_t n = c["features_shape"][0].get<int64_t>() * c["features_shape"][1].get<int64_t>();
  std::vector<float> out(static_cast<size_t>(n));
  std::ifstream in(fixture() + "/audio_features.f32", std::ios::binary);
  in.seekg(c["features_offset"].get<int64_t>() * 4);
  in.read(reinterpret_cast<char*>(out.data()), n * 4);
  EXPECT_TRUE(in.good()) << "audio_features.f32 is short";
  return out;
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = a.size() == b.size() ? 0.0f : INFINITY;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

// Encodes the clip and runs its prompt (the processor's expanded ids): all-position logits.
std::vector<float> prompt_logits(models::MultimodalLM& model, const nlohmann::json& c) {
  const auto ids = c["input_ids"].get<std::vector<int32_t>>();
  std::vector<uint8_t> mask(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) mask[i] = ids[i] == model.audio_token_id();
  const models::AudioFeatures f = model.audio_encoder()->encode(clip_audio(c));
  model.truncate(0);
  return model.forward_embeds(ids, true, {mask, f.rows});
}

class Qwen2Audio : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { AF_REQUIRE_TESTDATA(test::testdata_dir() + "/audio/jfk_16k.wav"); }
};

TEST_P(Qwen2Audio, TokenCountAndFeaturesEqualTransformers) {
  auto model = load_model();
  ASSERT_TRUE(model && model->audio_encoder());
  EXPECT_EQ(model->audio_token_id(), reference()["audio_token_id"].get<int32_t>());
  EXPECT_EQ(model->info().architecture, "Qwen2AudioForConditionalGeneration");
  const nlohmann::json c = clip(GetParam());
  const modalities::Audio audio = clip_audio(c);
  ASSERT_EQ(int64_t(audio.samples().size()), c["n_samples"].get<int64_t>());
  EXPECT_EQ(model->audio_encoder()->num_audio_tokens(audio), c["num_audio_tokens"].get<int64_t>());
  const models::AudioFeatures f = model->audio_encoder()->encode(audio);
  EXPECT_EQ(f.n_tokens, c["num_audio_tokens"].get<int64_t>());
  EXPECT_EQ(f.hidden, 32);
  EXPECT_LT(max_abs_diff(f.rows, reference_features(c)), 1e-4f) << GetParam();
}

TEST_P(Qwen2Audio, LogitsEqualTransformersAtEveryPosition) {
  auto model = load_model();
  ASSERT_TRUE(model);
  const nlohmann::json c = clip(GetParam());
  const std::vector<float> got = prompt_logits(*model, c);
  const std::vector<float> want =
      test::read_f32(fixture() + "/" + c["logits_file"].get<std::string>());
  const int64_t vocab = model->config().vocab_size;
  // jfk_x3 keeps only the last position's logits (the fixture's size).
  const std::vector<float> tail(got.end() - static_cast<std::ptrdiff_t>(want.size()), got.end());
  const test::LogitDiff d = test::compare_logits(tail, want, vocab);
  EXPECT_EQ(d.rows * vocab, int64_t(want.size()));
  EXPECT_LT(d.max_abs, 1e-4) << GetParam() << " (logit range " << d.ref_range << ")";
  EXPECT_EQ(d.top1_agree, d.rows);
}

TEST_P(Qwen2Audio, GreedyIdsEqualGenerate) {
  auto model = load_model();
  ASSERT_TRUE(model);
  const nlohmann::json c = clip(GetParam());
  const std::vector<float> logits = prompt_logits(*model, c);
  const int64_t vocab = model->config().vocab_size;
  std::vector<float> last(logits.end() - vocab, logits.end());
  std::vector<int32_t> got;
  for (size_t step = 0; step < c["generate_ids"].size(); ++step) {
    const auto next =
        static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
    got.push_back(next);
    last = model->forward(std::span(&next, 1), false);
  }
  EXPECT_EQ(got, c["generate_ids"].get<std::vector<int32_t>>());
}

INSTANTIATE_TEST_SUITE_P(Clips, Qwen2Audio, ::testing::Values("fox", "alice", "jfk_x3"));

TEST(Qwen2AudioBadInput, NoSamplesIsRefusedWithAClearError) {
  auto model = load_model();
  ASSERT_TRUE(model);
  // Decoding refuses a file or buffer without samples; an empty Audio reaching the encoder
  // anyway (a default-constructed one) is refused there, before any compute.
  try {
    modalities::Audio::from_samples({}, 16000, "empty");
    FAIL() << "0 samples accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no samples"), std::string::npos) << e.what();
  }
  try {
    model->audio_encoder()->encode(modalities::Audio());
    FAIL() << "0 samples encoded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("too short"), std::string::npos) << e.what();
  }
  // Up to 320 samples are at most 2 feature frames, one conv2 row: no token, as the processor
  // counts them ((1 - 2) // 2 + 1 = 0); 321 samples give 3 frames, 2 rows and the first token.
  EXPECT_THROW(model->audio_encoder()->num_audio_tokens(
                   modalities::Audio::from_samples(std::vector<float>(320, 0.1f), 16000)),
               Error);
  EXPECT_EQ(model->audio_encoder()->num_audio_tokens(
                modalities::Audio::from_samples(std::vector<float>(321, 0.1f), 16000)),
            1);
}

TEST(Qwen2AudioBadInput, SilenceEncodesToFiniteRows) {
  auto model = load_model();
  ASSERT_TRUE(model);
  const auto silence = modalities::Audio::from_samples(std::vector<float>(16000, 0.0f), 16000);
  const models::AudioFeatures f = model->audio_encoder()->encode(silence);
  EXPECT_EQ(f.n_tokens, 25);  // 100 frames -> 50 -> 25, as the processor counts
  EXPECT_TRUE(std::all_of(f.rows.begin(), f.rows.end(), [](float v) { return std::isfinite(v); }));
}

TEST(Qwen2AudioBadInput, NanSamplesAreRefusedBeforeTheEncoder) {
  std::vector<float> x(1600, 0.1f);
  x[700] = NAN;
  EXPECT_THROW(modalities::Audio::from_samples(std::move(x), 16000, "nan"), Error);
}

TEST(Qwen2AudioBadInput, AudioPastThirtySecondsIsTruncatedAsTransformersDoes) {
  // WhisperFeatureExtractor truncates to chunk_length (30 s) by default, so 33 s of audio give
  // the window's 750 tokens; the features equal those of the first 30 s alone.
  auto model = load_model();
  ASSERT_TRUE(model);
  const modalities::Audio audio = clip_audio(clip("jfk_x3"));
  const std::vector<float> first(audio.samples().begin(), audio.samples().begin() + 480000);
  const models::AudioFeatures whole = model->audio_encoder()->encode(audio);
  const models::AudioFeatures cut =
      model->audio_encoder()->encode(modalities::Audio::from_samples(first, 16000));
  EXPECT_EQ(whole.n_tokens, 750);
  EXPECT_EQ(whole.rows, cut.rows);
}

TEST(Qwen2AudioBadConfig, MelCountDisagreeingWithTheTowerNamesBothFiles) {
  test::TempFolder dir;
  for (const auto& e : std::filesystem::directory_iterator(fixture()))
    std::filesystem::copy(e.path(), dir / e.path().filename().string());
  // preprocessor_config.json (as hub checkpoints have it) wins over processor_config.json.
  nlohmann::json pre;
  {
    std::ifstream in(dir / "processor_config.json");
    pre = nlohmann::json::parse(in)["feature_extractor"];
  }
  pre["feature_size"] = 80;
  std::ofstream(dir / "preprocessor_config.json") << pre.dump();
  try {
    models::load((dir / "").string());
    FAIL() << "loaded a tower with the wrong mel count";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("num_mel_bins"), std::string::npos) << e.what();
  }
}

// Step 2's media path: the chat template gets {"type": "audio"} parts as transformers passes
// them, Session expands <|AUDIO|> to the processor's count, greedy decoding gives generate()'s
// ids, and the audio's KV and encoder output are reused by content (not by placeholder ids).
TEST(Qwen2AudioSession, ChatWithAnAudioPartEqualsTheProcessorAndGenerate) {
  AF_REQUIRE_TESTDATA(test::testdata_dir() + "/audio/speech_fox_16k.wav");
  const nlohmann::json c = clip("fox");
  Session session = SessionBuilder().parse_special_in_content(true).build(load_model());
  const ChatMessage message{"user", "What is said?", {}, {}, {clip_audio(c)}};
  EXPECT_EQ(session.render_chat({message}, true), c["text"].get<std::string>());
  GenerateRequest req;
  req.max_tokens = 8;
  req.ignore_eos = true;
  req.sampling.temperature = 0;
  const GenerateResponse first = session.chat_completion({message}, req);
  const auto ids = c["input_ids"].get<std::vector<int32_t>>();
  EXPECT_EQ(first.ids, c["generate_ids"].get<std::vector<int32_t>>());
  EXPECT_EQ(first.prompt_tokens, int64_t(ids.size()));
  const std::vector<int32_t>& held = session.cached_ids();
  ASSERT_GE(held.size(), ids.size());
  EXPECT_EQ(std::vector<int32_t>(held.begin(), held.begin() + ids.size()), ids);
  EXPECT_EQ(session.encoder_calls(), 1u);

  // The same audio again: its rows come from the KV cache, the encoder does not run.
  const GenerateResponse again = session.chat_completion({message}, req);
  EXPECT_EQ(again.ids, first.ids);
  EXPECT_GE(again.cached_tokens, int64_t(ids.size()) - 1);
  EXPECT_EQ(session.encoder_calls(), 1u);

  // Another audio behind the same placeholder ids shares only the text before it.
  const ChatMessage other{"user", "What is said?", {}, {}, {clip_audio(clip("alice"))}};
  const GenerateResponse alice = session.chat_completion({other}, req);
  EXPECT_EQ(alice.ids, clip("alice")["generate_ids"].get<std::vector<int32_t>>());
  const auto first_audio =
      std::find(ids.begin(), ids.end(), reference()["audio_token_id"].get<int32_t>());
  EXPECT_EQ(alice.cached_tokens, first_audio - ids.begin());  // the text before the audio
  EXPECT_EQ(session.encoder_calls(), 2u);
}

TEST(Qwen2AudioSession, ImagesAndTextOnlyModelsAreRefusedClearly) {
  Session session = SessionBuilder().build(load_model());
  GenerateRequest req;
  req.prompt = "hi";
  req.max_tokens = 1;
  req.images.push_back(modalities::Image(1, 1, std::vector<uint8_t>{1, 2, 3}));
  try {
    session.generate(req);
    FAIL() << "an image went to an audio model";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("takes no images"), std::string::npos) << e.what();
  }
  models::LoadOptions options;
  options.num_threads = 1;
  Session text = SessionBuilder().build(
      models::load(test::testdata_dir() + "/models/stories260K-hf", options));
  GenerateRequest audio_req;
  audio_req.prompt_ids = {1, 2};
  audio_req.max_tokens = 1;
  audio_req.audios.push_back(modalities::Audio::from_samples(std::vector<float>(1600, 0.f), 16000));
  try {
    text.generate(audio_req);
    FAIL() << "audio went to a text-only model";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("takes no audio"), std::string::npos) << e.what();
  }
}

// The server's path: Scheduler requests with audio give generate()'s ids; the same audio again
// reuses the slot's KV (all but the last prompt id) without encoding, another audio behind the
// same ids does not; an image request to the audio model fails with a clear error.
TEST(Qwen2AudioScheduler, GreedyIdsAndKvKeyedByAudioContent) {
  AF_REQUIRE_TESTDATA(test::testdata_dir() + "/audio/speech_fox_16k.wav");
  auto model = load_model();
  ASSERT_TRUE(model);
  const auto tokenizer = tok::Tokenizer::load(fixture());
  runtime::SchedulerOptions options;
  options.parallel = 1;
  options.slot_context = 1024;
  options.eos_ids = {9999};  // 8 tokens whatever is sampled, as the fixture's generate
  runtime::Scheduler scheduler(*model, *tokenizer, options);
  auto run = [&](const nlohmann::json& c) {
    auto promise = std::make_shared<std::promise<runtime::RequestResult>>();
    std::future<runtime::RequestResult> done = promise->get_future();
    runtime::GenerationRequest req;
    req.prompt = c["input_ids"].get<std::vector<int32_t>>();
    req.audios = {clip_audio(c)};
    req.max_tokens = 8;
    req.on_done = [promise](const runtime::RequestResult& r) { promise->set_value(r); };
    EXPECT_TRUE(scheduler.submit(std::move(req)).has_value());
    const runtime::RequestResult r = done.get();
    std::vector<int32_t> ids;
    for (const auto& t : r.tokens) ids.push_back(t.id);
    EXPECT_EQ(ids, c["generate_ids"].get<std::vector<int32_t>>()) << c["name"];
    return r;
  };
  const nlohmann::json fox = clip("fox");
  const int64_t n = int64_t(fox["input_ids"].size());
  EXPECT_EQ(run(fox).prompt_tokens, n);
  EXPECT_EQ(run(fox).cached_prompt_tokens, n - 1);
  EXPECT_EQ(scheduler.stats().image_encodes, 1u);
  EXPECT_LT(run(clip("alice")).cached_prompt_tokens, 40);
  EXPECT_EQ(scheduler.stats().image_encodes, 2u);
  runtime::GenerationRequest image;
  image.prompt = {1, 2};
  image.images.push_back(modalities::Image(1, 1, std::vector<uint8_t>{1, 2, 3}));
  try {
    scheduler.submit(std::move(image));
    FAIL() << "an image went to the audio model";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("takes no images"), std::string::npos) << e.what();
  }
}

// af-cli run --audio on the chat template's text gives generate()'s ids; a text-only prompt gets
// the audio span in front; audio to an image model is a clear error, not a crash.
TEST(Qwen2AudioCli, RunWithAudioGivesGenerateIds) {
  AF_REQUIRE_TESTDATA(test::testdata_dir() + "/audio/speech_fox_16k.wav");
  const nlohmann::json c = clip("fox");
  test::TempFolder dir;
  std::ofstream(dir / "prompt.txt") << c["text"].get<std::string>();
  const std::string wav = test::testdata_dir() + "/audio/speech_fox_16k.wav";
  const std::string cli = std::string(AF_CLI_PATH) + " run -t 1 --temp 0 --audio " + wav;
  const test::ShellResult r =
      test::run_shell(cli + " -m " + fixture() + " -n 8 --ignore-eos --print-ids -f " +
                      (dir / "prompt.txt").string() + " 2>/dev/null");
  ASSERT_EQ(r.status, 0) << r.out;
  std::string want;
  for (int32_t id : c["generate_ids"].get<std::vector<int32_t>>())
    want += (want.empty() ? "" : " ") + std::to_string(id);
  EXPECT_EQ(r.out, want + "\n");
  const test::ShellResult plain =
      test::run_shell(cli + " -m " + fixture() + " -n 1 -p 'What is said?' 2>&1");
  EXPECT_EQ(plain.status, 0) << plain.out;
  EXPECT_NE(plain.out.find("prompt 96 tokens"), std::string::npos) << plain.out;  // 86 + 10
  const test::ShellResult image_model =
      test::run_shell(cli + " -m " + test::fixtures_dir() + "/models/llava_clip -n 1 -p hi 2>&1");
  EXPECT_NE(image_model.status, 0);
  EXPECT_NE(image_model.out.find("takes no audio"), std::string::npos) << image_model.out;
}

// af-cli logits --audio: every expanded position's logits equal transformers' (the ids hold
// <|AUDIO|> once; the CLI expands it as the processor does).
TEST(Qwen2AudioCli, LogitsWithAudioEqualTransformers) {
  AF_REQUIRE_TESTDATA(test::testdata_dir() + "/audio/speech_fox_16k.wav");
  const nlohmann::json c = clip("fox");
  const int32_t audio_token = reference()["audio_token_id"].get<int32_t>();
  std::string ids;
  for (int32_t id : c["input_ids"].get<std::vector<int32_t>>()) {
    const bool repeat = id == audio_token && ids.size() >= 4 &&
                        ids.compare(ids.size() - 4, 4, " " + std::to_string(audio_token)) == 0;
    if (!repeat) ids += " " + std::to_string(id);
  }
  const test::ShellResult r =
      test::run_shell(std::string(AF_CLI_PATH) + " logits -t 1 -m " + fixture() + " --audio " +
                      test::testdata_dir() + "/audio/speech_fox_16k.wav --ids '" + ids + "' 2>&1");
  ASSERT_EQ(r.status, 0) << r.out.substr(0, 400);
  std::istringstream in(r.out);
  std::vector<float> got;
  for (float v; in >> v;) got.push_back(v);
  const std::vector<float> want = test::read_f32(fixture() + "/logits_fox.f32");
  ASSERT_EQ(got.size(), want.size());
  EXPECT_LT(max_abs_diff(got, want), 1e-4f);
}

}  // namespace
}  // namespace af
