// The runtime: Session generation on stories260K and on custom models — greedy text equal to
// the reference, seeds, streaming, stop strings, chat cache reuse, cancellation, bad input.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <unistd.h>

#include "af/core/error.hpp"
#include "af/models/causal_lm.hpp"
#include "af/runtime/session.hpp"
#include "test_util.hpp"

namespace af {
namespace {

namespace fs = std::filesystem;

std::string stories(const std::string& name) { return test::testdata_dir() + "/models/" + name; }

Session load_session(const std::string& path, int threads = 2, int64_t context = 0) {
  models::LoadOptions options;
  options.num_threads = threads;
  options.context_length = context;
  return SessionBuilder().build(models::load(path, options));
}

std::string expected_greedy_text() {
  const std::string text = test::read_text(stories("stories260K/expected_once_upon_a_time.txt"));
  const std::string label = "greedy_generated_text: '";
  const size_t begin = text.find(label) + label.size();
  return text.substr(begin, text.find("'\n", begin) - begin);
}

// Replays a fixed id sequence whatever it is fed: a custom model for exact streaming tests.
class ScriptedModel : public Model {
 public:
  ScriptedModel(std::vector<int32_t> script, int64_t vocab)
      : script_(std::move(script)), vocab_(vocab) {}
  void reset_state() override {
    fed_ = 0;
    steps_ = 0;
  }
  std::vector<float> forward_step(std::span<const int32_t> ids) override {
    fed_ += static_cast<int64_t>(ids.size());
    std::vector<float> logits(static_cast<size_t>(vocab_), 0.0f);
    const size_t next = std::min(steps_++, script_.size() - 1);
    logits[static_cast<size_t>(script_[next])] = 20.0f;
    return logits;
  }
  ModelConfig config() const override { return {vocab_, 4096, 0, 0}; }
  int64_t fed() const { return fed_; }

 private:
  std::vector<int32_t> script_;
  int64_t vocab_;
  int64_t fed_ = 0;
  size_t steps_ = 0;
};

class SessionStories : public ::testing::TestWithParam<std::string> {};

TEST_P(SessionStories, GreedyTextEqualsReference) {
  AF_REQUIRE_TESTDATA(stories(GetParam()));
  Session session = load_session(stories(GetParam()));
  const GenerateResponse res = session.generate({.prompt = "Once upon a time", .max_tokens = 48});
  EXPECT_EQ(res.text, expected_greedy_text());
  EXPECT_EQ(res.finish_reason, FinishReason::kLength);
  EXPECT_EQ(res.ids.size(), 48u);
  EXPECT_EQ(res.prompt_tokens, 5);
  EXPECT_GT(res.timings.generated_tokens_per_s, 0);
  EXPECT_GT(res.timings.time_to_first_token_ms, 0);
}

INSTANTIATE_TEST_SUITE_P(Formats, SessionStories,
                         ::testing::Values("stories260K/stories260K.gguf", "stories260K-hf"));

TEST(Session, SameSeedSameTextAtOneAndTwoThreads) {
  AF_REQUIRE_TESTDATA(stories("stories260K-hf"));
  GenerateRequest req{.prompt = "Once upon a time", .max_tokens = 40};
  req.sampling = {.temperature = 0.9f, .top_k = 40, .top_p = 0.95f, .seed = 1234};
  std::vector<std::vector<int32_t>> runs;
  for (int threads : {1, 2, 2}) {
    Session s = load_session(stories("stories260K-hf"), threads);
    runs.push_back(s.generate(req).ids);
  }
  EXPECT_EQ(runs[0], runs[1]);
  EXPECT_EQ(runs[1], runs[2]);
  Session s = load_session(stories("stories260K-hf"));
  req.sampling.seed = 99;
  EXPECT_NE(s.generate(req).ids, runs[0]);
}

TEST(Session, TopK1EqualsGreedy) {
  AF_REQUIRE_TESTDATA(stories("stories260K-hf"));
  Session s = load_session(stories("stories260K-hf"));
  GenerateRequest req{.prompt = "Once upon a time", .max_tokens = 48};
  req.sampling = {.temperature = 1.5f, .top_k = 1, .seed = 7};
  EXPECT_EQ(s.generate(req).text, expected_greedy_text());
}

TEST(Session, StreamingConcatenationEqualsTextWithSplitCharacters) {
  AF_REQUIRE_TESTDATA(stories("stories260K-hf"));
  auto tokenizer = tok::Tokenizer::load(stories("stories260K-hf"));
  // "日本" as single byte tokens: each character arrives in three tokens.
  std::vector<int32_t> script = tokenizer->encode("The cat", false);
  for (unsigned char byte : std::string("日本")) {
    char piece[8];
    std::snprintf(piece, sizeof piece, "<0x%02X>", byte);
    script.push_back(tokenizer->token_id(piece));
  }
  for (int32_t id : tokenizer->encode("sat.", false)) script.push_back(id);
  script.push_back(tokenizer->eos_id());
  for (int32_t id : script) ASSERT_GE(id, 0);

  // What decoding prompt + script adds to the prompt's text.
  std::vector<int32_t> all = tokenizer->encode("Hi", true);
  const std::string prompt_text = tokenizer->decode(all, true);
  all.insert(all.end(), script.begin(), script.end());
  const std::string expected = tokenizer->decode(all, true).substr(prompt_text.size());
  ASSERT_NE(expected.find("cat日本"), std::string::npos) << expected;
  Session s = SessionBuilder()
                  .tokenizer(std::move(tokenizer))
                  .build(std::make_unique<ScriptedModel>(script, 512));
  std::string streamed;
  std::vector<std::string> events;
  GenerateRequest req{.prompt = "Hi", .max_tokens = 50};
  req.on_token = [&](const TokenEvent& e) {
    streamed += e.text;
    events.emplace_back(e.text);
    return true;
  };
  const GenerateResponse res = s.generate(req);
  EXPECT_EQ(res.text, expected);
  EXPECT_EQ(res.text[0], ' ');  // a continuation keeps its leading space
  EXPECT_EQ(streamed, res.text);
  EXPECT_EQ(res.finish_reason, FinishReason::kStop);
  for (const std::string& e : events) {
    // Never a partial character: every event is valid UTF-8 on its own.
    for (size_t i = 0; i < e.size();) {
      const auto c = static_cast<unsigned char>(e[i]);
      const size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
      ASSERT_LE(i + len, e.size()) << "partial character in a streamed piece";
      i += len;
    }
  }
}

TEST(Session, StopStringsSpanningTokensAreHonouredAndNotShown) {
  AF_REQUIRE_TESTDATA(stories("stories260K-hf"));
  auto tokenizer = tok::Tokenizer::load(stories("stories260K-hf"));
  const std::vector<int32_t> script =
      tokenizer->encode("Lily saw a big red ball and smiled.", false);
  Session s = SessionBuilder()
                  .tokenizer(std::move(tokenizer))
                  .build(std::make_unique<ScriptedModel>(script, 512));
  std::string streamed;
  GenerateRequest req{.prompt = "Hi", .max_tokens = 50, .stop = {"ed ba", "never"}};
  req.on_token = [&](const TokenEvent& e) {
    streamed += e.text;
    return true;
  };
  const GenerateResponse res = s.generate(req);
  EXPECT_EQ(res.text, " Lily saw a big r");
  EXPECT_EQ(streamed, res.text);
  EXPECT_EQ(res.finish_reason, FinishReason::kStop);
  EXPECT_EQ(res.stop_string, "ed ba");
}

TEST(Session, ChatReusesTheCacheOfEarlierTurns) {
  AF_REQUIRE_TESTDATA(stories("stories260K-hf"));
  models::LoadOptions options;
  options.num_threads = 2;
  options.context_length = 1024;
  Session s = SessionBuilder()
                  // The reply follows "assistant:" directly, as it was generated.
                  .chat_template(
                      "{% for m in messages %}{{ m['role'] }}:{{ m['content'] }}\n"
                      "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}")
                  .build(models::load(stories("stories260K-hf"), options));
  GenerateRequest req{.max_tokens = 12};
  const GenerateResponse t1 = s.chat("Tell me about a cat.", req);
  EXPECT_EQ(t1.cached_tokens, 0);
  const GenerateResponse t2 = s.chat("What did the cat do?", req);
  const GenerateResponse t3 = s.chat("And then?", req);
  ASSERT_EQ(s.history().size(), 6u);
  EXPECT_EQ(s.history()[5].content, t3.text);
  for (const GenerateResponse* t : {&t2, &t3}) {
    EXPECT_EQ(t->prefill_tokens, t->prompt_tokens - t->cached_tokens);
  }
  // Turn 3 recomputes only what turn 2 did not hold: its own new message (and at most the
  // two tokens where the re-tokenized reply may join differently).
  EXPECT_GE(t3.cached_tokens, t2.prompt_tokens + static_cast<int64_t>(t2.ids.size()) - 2);
  const int64_t new_message_tokens =
      static_cast<int64_t>(s.tokenizer()->encode("\nuser:And then?\nassistant:", false).size());
  EXPECT_LE(t3.prefill_tokens, new_message_tokens + 2);
  // /reset forgets everything.
  s.reset();
  EXPECT_TRUE(s.history().empty());
  EXPECT_EQ(s.chat("Hello", req).cached_tokens, 0);
}

TEST(Session, PlainModelsExtendWhenThePromptExtendsTheCache) {
  auto* raw = new ScriptedModel({3, 4, 5, 6}, 16);
  Session s = SessionBuilder().eos_ids({}).build(std::unique_ptr<Model>(raw));
  GenerateResponse a = s.generate({.max_tokens = 2, .prompt_ids = {1, 2}});
  EXPECT_EQ(a.ids, (std::vector<int32_t>{3, 4}));
  // The held sequence is 1 2 3 (4 was sampled, not fed); a prompt extending it reuses it.
  GenerateResponse b = s.generate({.max_tokens = 1, .prompt_ids = {1, 2, 3, 4, 9}});
  EXPECT_EQ(b.cached_tokens, 3);
  EXPECT_EQ(b.prefill_tokens, 2);
  GenerateResponse c = s.generate({.max_tokens = 1, .prompt_ids = {7}});
  EXPECT_EQ(c.cached_tokens, 0);
}

TEST(Session, CancelFromAnotherThreadStopsGeneration) {
  AF_REQUIRE_TESTDATA(stories("stories260K-hf"));
  Session s = load_session(stories("stories260K-hf"), 1, 2048);
  std::atomic<int> tokens{0};
  GenerateRequest req{.prompt = "Once upon a time", .max_tokens = 2000};
  req.ignore_eos = true;
  req.on_token = [&](const TokenEvent&) {
    ++tokens;
    return true;
  };
  std::thread canceller([&] {
    while (tokens.load() < 5) std::this_thread::yield();
    s.cancel();
  });
  const GenerateResponse res = s.generate(req);
  canceller.join();
  EXPECT_EQ(res.finish_reason, FinishReason::kCancelled);
  EXPECT_LT(res.ids.size(), 2000u);
  EXPECT_GE(res.ids.size(), 5u);
}

// cancel() also stops the tokenization of a long prompt (before, encode ran to its end).
TEST(Session, CancelStopsALongTokenization) {
  AF_REQUIRE_TESTDATA(stories("stories260K-hf"));
  Session s = load_session(stories("stories260K-hf"), 1, 2048);
  std::string prompt;
  while (prompt.size() < (4u << 20)) prompt += "Once upon a time, a cat sat. ";
  std::atomic<bool> done{false};
  std::thread canceller([&] {
    // Keeps cancelling: generate() clears the flag when it starts.
    while (!done.load()) {
      s.cancel();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  const auto t = std::chrono::steady_clock::now();
  const GenerateResponse res = s.generate({.prompt = prompt, .max_tokens = 4});
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  done = true;
  canceller.join();
  EXPECT_EQ(res.finish_reason, FinishReason::kCancelled);
  EXPECT_TRUE(res.ids.empty());
  EXPECT_LT(seconds, 2.0 * af::test::time_scale());
}

TEST(Session, ContextFullEndsGenerationWithAReason) {
  AF_REQUIRE_TESTDATA(stories("stories260K-hf"));
  Session s = load_session(stories("stories260K-hf"), 2, 20);
  GenerateRequest req{.prompt = "Once upon a time", .max_tokens = 100};
  req.ignore_eos = true;
  const GenerateResponse res = s.generate(req);
  EXPECT_EQ(res.finish_reason, FinishReason::kContextFull);
  EXPECT_EQ(static_cast<int64_t>(res.ids.size()), 20 - res.prompt_tokens + 1);
}

TEST(Session, LogprobsAreReportedPerToken) {
  AF_REQUIRE_TESTDATA(stories("stories260K-hf"));
  Session s = load_session(stories("stories260K-hf"));
  GenerateRequest req{.prompt = "Once upon a time", .max_tokens = 6, .logprobs = true};
  req.sampling.top_logprobs = 3;
  const GenerateResponse res = s.generate(req);
  ASSERT_EQ(res.tokens.size(), res.ids.size());
  for (size_t i = 0; i < res.tokens.size(); ++i) {
    const ops::SampledToken& t = res.tokens[i];
    EXPECT_EQ(t.id, res.ids[i]);
    EXPECT_LE(t.logprob, 0.0f);
    ASSERT_EQ(t.top.size(), 3u);
    EXPECT_EQ(t.top[0].id, t.id);  // greedy picks the most likely
    EXPECT_GE(t.top[0].logprob, t.top[1].logprob);
    EXPECT_GE(t.top[1].logprob, t.top[2].logprob);
  }
}

TEST(Session, BadInputGivesClearErrors) {
  AF_REQUIRE_TESTDATA(stories("stories260K-hf"));
  Session s = load_session(stories("stories260K-hf"), 2, 32);
  auto message_of = [&](const GenerateRequest& req) -> std::string {
    try {
      s.generate(req);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(message_of({.prompt = ""}).find("prompt is empty"), std::string::npos);
  EXPECT_NE(message_of({.prompt = "Hi", .max_tokens = 0}).find("max_tokens"), std::string::npos);
  std::string long_prompt;
  for (int i = 0; i < 40; ++i) long_prompt += " Once upon a time";
  EXPECT_NE(message_of({.prompt = long_prompt}).find("context holds 32"), std::string::npos);
  GenerateRequest bad_ids{.prompt_ids = {1, 100000}};
  EXPECT_NE(message_of(bad_ids).find("outside the vocabulary"), std::string::npos);
  GenerateRequest bad_stop{.prompt = "Hi", .stop = {""}};
  EXPECT_NE(message_of(bad_stop).find("stop string 0 is empty"), std::string::npos);
  // The session still works after errors.
  EXPECT_EQ(s.generate({.prompt = "Once upon a time", .max_tokens = 4}).ids.size(), 4u);

  EXPECT_THROW(models::load("/nonexistent/model"), Error);
  // A custom model without a tokenizer cannot take text.
  Session custom =
      SessionBuilder().build(std::make_unique<ScriptedModel>(std::vector<int32_t>{1}, 8));
  EXPECT_THROW(custom.generate({.prompt = "text"}), Error);
  EXPECT_THROW(SessionBuilder().build(nullptr), Error);
}

TEST(Session, UnknownArchitectureAndMissingTokenizerAreClearErrors) {
  AF_REQUIRE_TESTDATA(stories("stories260K-hf"));
  const fs::path dir = fs::temp_directory_path() / ("af_session_bad_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::copy_file(stories("stories260K-hf") + "/model.safetensors", dir / "model.safetensors",
                fs::copy_options::overwrite_existing);
  std::string config = test::read_text(stories("stories260K-hf") + "/config.json");
  { std::ofstream(dir / "config.json") << config; }
  try {
    SessionBuilder().build(models::load(dir.string()));
    ADD_FAILURE() << "a folder without tokenizer files loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer"), std::string::npos) << e.what();
  }
  const size_t at = config.find("LlamaForCausalLM");
  ASSERT_NE(at, std::string::npos);
  config.replace(at, 16, "NoSuchForCausalLM");
  { std::ofstream(dir / "config.json") << config; }
  try {
    models::load(dir.string());
    ADD_FAILURE() << "an unknown architecture loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("NoSuchForCausalLM"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace af

namespace af {
namespace {

TEST(SessionChat, RendersTheModelTemplateAsTransformersDoes) {
  const std::string dir = test::testdata_dir() + "/templates/";
  AF_REQUIRE_TESTDATA(dir + "expected/conversation.json");
  AF_REQUIRE_TESTDATA(test::testdata_dir() + "/models/stories260K-hf");
  Session s = SessionBuilder()
                  .chat_template(test::read_text(dir + "Qwen-Qwen2.5-7B-Instruct.jinja"))
                  .build(models::load(test::testdata_dir() + "/models/stories260K-hf"));
  const std::vector<ChatMessage> messages = {{"system", "You are a helpful assistant."},
                                             {"user", "Hello! What is 2+2?"},
                                             {"assistant", "2+2 equals 4."},
                                             {"user", "Thanks. Now tell me a short joke."}};
  EXPECT_EQ(s.render_chat(messages, true),
            test::read_text(dir + "expected/Qwen-Qwen2.5-7B-Instruct.gen.txt"));
  EXPECT_EQ(s.render_chat(messages, false),
            test::read_text(dir + "expected/Qwen-Qwen2.5-7B-Instruct.nogen.txt"));
}

}  // namespace
}  // namespace af
