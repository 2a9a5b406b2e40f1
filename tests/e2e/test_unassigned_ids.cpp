// Hardening issue 21 item 1 on a whole model: stories260K-hf whose tokenizer lacks the ids the
// model's greedy continuation would pick (holes of the id space) and its last id (embedding
// padding). Generation must mask them everywhere (Session, Scheduler, af-cli run), prompts with
// them are refused with a clear error, and no error ever ends the scheduler thread.
#include <atomic>
#include <chrono>
#include <future>
#include <set>
#include <sstream>

#include "af/core/error.hpp"
#include "af/models/causal_lm.hpp"
#include "af/runtime/scheduler.hpp"
#include "af/runtime/session.hpp"
#include "af/tokenizer/tokenizer.hpp"
#include "holed_stories.hpp"
#include "test_util.hpp"

namespace af {
namespace {

models::LoadOptions one_thread() {
  models::LoadOptions o;
  o.num_threads = 1;
  return o;
}

// The first ids of the unmasked greedy continuation of "Once upon a time" (not BOS/EOS/UNK).
std::set<int32_t> greedy_ids() {
  Session s = SessionBuilder().build(models::load(test::stories_hf_dir(), one_thread()));
  const GenerateResponse r = s.generate({.prompt = "Once upon a time", .max_tokens = 12});
  std::set<int32_t> ids;
  for (int32_t id : r.ids) {
    if (id > 2) ids.insert(id);
  }
  return ids;
}

class HoledStories : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(test::stories_hf_dir())) GTEST_SKIP() << "no stories260K-hf";
    holes_ = greedy_ids();
    ASSERT_GE(holes_.size(), 3u);
    holes_.insert(511);
    path_ = test::write_holed_stories(dir_ / "", holes_);
  }
  bool is_hole(int32_t id) const { return holes_.count(id) > 0; }

  test::TempFolder dir_{"af_holed"};
  std::set<int32_t> holes_;
  std::string path_;
};

TEST_F(HoledStories, SessionGreedyAndLogprobsNeverPickAHole) {
  Session s = SessionBuilder().build(models::load(path_, one_thread()));
  GenerateRequest req{.prompt = "Once upon a time", .max_tokens = 24};
  req.logprobs = true;
  req.sampling.top_logprobs = 20;
  const GenerateResponse r = s.generate(req);  // 7a16acc: "unknown token id"
  ASSERT_EQ(r.ids.size(), r.tokens.size());
  EXPECT_FALSE(r.text.empty());
  for (size_t i = 0; i < r.ids.size(); ++i) {
    EXPECT_FALSE(is_hole(r.ids[i])) << "token " << i;
    for (const ops::TokenLogprob& alt : r.tokens[i].top) EXPECT_FALSE(is_hole(alt.id));
  }
  req.sampling.temperature = 1.5f;
  req.sampling.seed = 7;
  for (int32_t id : s.generate(req).ids) EXPECT_FALSE(is_hole(id));
}

TEST_F(HoledStories, SessionRefusesHolesInPromptIds) {
  Session s = SessionBuilder().build(models::load(path_, one_thread()));
  GenerateRequest req{.max_tokens = 2};
  req.prompt_ids = {1, *holes_.begin()};
  try {
    s.generate(req);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("prompt token 1"), std::string::npos) << e.what();
  }
  req.prompt_ids = {1, 511};  // padding row: the model has it, the tokenizer does not
  EXPECT_THROW(s.generate(req), Error);
}

TEST_F(HoledStories, SchedulerMasksHolesAndRefusesThemInPrompts) {
  auto model = models::load(path_, one_thread());
  auto tok = tok::Tokenizer::load(path_);
  runtime::Scheduler scheduler(*model, *tok, {.parallel = 2});
  runtime::GenerationRequest bad;
  bad.prompt = {1, *holes_.rbegin()};
  EXPECT_THROW(scheduler.submit(bad), Error);  // 7a16acc: accepted, then SIGABRT at admission

  auto run = [&](bool json_object) {
    std::promise<runtime::RequestResult> done;
    runtime::GenerationRequest g;
    g.prompt = tok->encode("Once upon a time", true);
    g.max_tokens = 16;
    g.sampling.top_logprobs = 20;
    g.json_object = json_object;
    g.on_done = [&](const runtime::RequestResult& r) { done.set_value(r); };
    EXPECT_TRUE(scheduler.submit(std::move(g)).has_value());
    auto f = done.get_future();
    EXPECT_EQ(f.wait_for(std::chrono::seconds(60)), std::future_status::ready);
    return f.get();
  };
  const runtime::RequestResult plain = run(false);
  EXPECT_NE(plain.cause, runtime::StopCause::kError) << plain.error;
  EXPECT_FALSE(plain.tokens.empty());
  for (const runtime::GeneratedToken& t : plain.tokens) {
    EXPECT_FALSE(is_hole(t.id));
    for (const ops::TokenLogprob& alt : t.top) EXPECT_FALSE(is_hole(alt.id));
  }
  const runtime::RequestResult json = run(true);  // 7a16acc: is_special(hole) threw -> kError
  EXPECT_NE(json.cause, runtime::StopCause::kError) << json.error;
}

TEST_F(HoledStories, CliRunGreedyGenerates) {
  const test::ShellResult r = test::run_shell(std::string(AF_CLI_PATH) + " run -m " + path_ +
                                              " -p 'Once upon a time' -n 16 --temp 0 2>&1");
  EXPECT_EQ(r.status, 0) << r.out;  // 7a16acc: "unknown token id"
  EXPECT_EQ(r.out.find("unknown token id"), std::string::npos) << r.out;
}

// The prompt size af-cli chat reports for one message (its stats line on stderr).
long chat_prompt_tokens(const std::string& message, const std::string& flags) {
  const test::ShellResult r =
      test::run_shell("printf '" + message + "\\n' | " + std::string(AF_CLI_PATH) + " chat -m " +
                      test::stories_hf_dir() + " --temp 0 -n 1 " + flags + " 2>&1 >/dev/null");
  EXPECT_EQ(r.status, 0) << r.out;
  const size_t at = r.out.find("| prompt ");
  return at == std::string::npos ? -1 : std::stol(r.out.substr(at + 9));
}

// The number of ids af-cli tokenize gives for `text`.
long cli_token_count(const std::string& text, const std::string& flags) {
  const test::ShellResult r =
      test::run_shell("printf '" + text + "' | " + std::string(AF_CLI_PATH) + " tokenize -m " +
                      test::stories_hf_dir() + " " + flags + " 2>/dev/null");
  std::istringstream ids(r.out);
  long n = 0;
  for (std::string id; ids >> id;) ++n;
  return n;
}

TEST(CliChatSpecialTokens, EosTypedInAMessageStaysPlainTextUnlessAskedFor) {
  AF_REQUIRE_TESTDATA(test::stories_hf_dir());
  // The ChatML prompt (no BOS: chat prompts are not given one); "</s>" is one control token
  // only when parsed. (7a16acc: the flag did not exist, and chat always parsed.)
  const std::string prompt = "<|im_start|>user\\nHi</s><|im_end|>\\n<|im_start|>assistant\\n";
  EXPECT_EQ(chat_prompt_tokens("Hi</s>", ""), cli_token_count(prompt, ""));
  EXPECT_EQ(chat_prompt_tokens("Hi</s>", "--parse-special-in-content"),
            cli_token_count(prompt, "--parse-special"));
  EXPECT_GT(cli_token_count(prompt, ""), cli_token_count(prompt, "--parse-special"));
}

TEST(SchedulerThread, AThrowingCallbackFailsNoOtherRequestAndNeverTheProcess) {
  AF_REQUIRE_TESTDATA(test::stories_hf_dir());
  auto model = models::load(test::stories_hf_dir(), one_thread());
  auto tok = tok::Tokenizer::load(test::stories_hf_dir());
  runtime::Scheduler scheduler(*model, *tok, {.parallel = 1});
  const std::vector<int32_t> prompt = tok->encode("Once upon a time", true);

  // A occupies the only slot; B waits behind it and is cancelled there, and its on_done throws
  // (on 7a16acc out of the scheduler thread: std::terminate).
  std::promise<runtime::RequestResult> a_done, c_done;
  runtime::GenerationRequest a;
  a.prompt = prompt;
  a.max_tokens = 64;
  a.on_done = [&](const runtime::RequestResult& r) { a_done.set_value(r); };
  runtime::GenerationRequest b;
  b.prompt = prompt;
  b.max_tokens = 4;
  std::atomic<bool> b_called{false};
  b.on_done = [&](const runtime::RequestResult&) {
    b_called = true;
    throw std::runtime_error("callback failure");
  };
  ASSERT_TRUE(scheduler.submit(std::move(a)).has_value());
  const auto b_id = scheduler.submit(std::move(b));
  ASSERT_TRUE(b_id.has_value());
  scheduler.cancel(*b_id);
  // C's on_chunk throws: C fails with the message, the scheduler goes on.
  runtime::GenerationRequest c;
  c.prompt = prompt;
  c.max_tokens = 4;
  c.on_chunk = [](const runtime::StreamChunk&) { throw std::runtime_error("chunk failure"); };
  c.on_done = [&](const runtime::RequestResult& r) { c_done.set_value(r); };
  ASSERT_TRUE(scheduler.submit(std::move(c)).has_value());

  auto fa = a_done.get_future(), fc = c_done.get_future();
  ASSERT_EQ(fa.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  ASSERT_EQ(fc.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  EXPECT_EQ(fa.get().cause, runtime::StopCause::kMaxTokens);
  const runtime::RequestResult rc = fc.get();
  EXPECT_EQ(rc.cause, runtime::StopCause::kError);
  EXPECT_NE(rc.error.find("chunk failure"), std::string::npos) << rc.error;
  EXPECT_TRUE(b_called.load());
}

}  // namespace
}  // namespace af
