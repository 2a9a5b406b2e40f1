// Session::chat_completion (a conversation given whole, history untouched) and Session::logits
// (every position of a fresh sequence), which the C API and the Python module are built on.
#include <cmath>

#include "af/core/error.hpp"
#include "af/models/causal_lm.hpp"
#include "af/runtime/session.hpp"
#include "runtime/chat.hpp"
#include "test_util.hpp"

namespace af {
namespace {

std::string stories_gguf() { return test::testdata_dir() + "/models/stories260K/stories260K.gguf"; }

Session chatml_session() {
  return SessionBuilder()
      .chat_template(runtime::kChatMlTemplate)
      .build(models::load(stories_gguf(), {.num_threads = 1, .context_length = 512}));
}

TEST(SessionStateless, ChatCompletionEqualsChatAndKeepsNoHistory) {
  Session stateless = chatml_session();
  Session stateful = chatml_session();
  stateful.set_system_prompt("Be kind.");
  stateful.reset();
  const GenerateRequest request{.max_tokens = 6};
  const GenerateResponse a =
      stateless.chat_completion({{"system", "Be kind."}, {"user", "Tell a story."}}, request);
  const GenerateResponse b = stateful.chat("Tell a story.", request);
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_EQ(a.text, b.text);
  EXPECT_TRUE(stateless.history().empty());
  // The second turn, given whole, reuses the cached prefix of the first.
  const GenerateResponse c = stateless.chat_completion(
      {{"system", "Be kind."}, {"user", "Tell a story."}, {"assistant", a.text}, {"user", "More"}},
      request);
  const GenerateResponse d = stateful.chat("More", request);
  EXPECT_EQ(c.ids, d.ids);
  EXPECT_GT(c.cached_tokens, 0);
}

TEST(SessionStateless, LogitsOfEveryPositionEqualTheModelsForward) {
  Session session = chatml_session();
  const std::vector<int32_t> ids = session.tokenizer()->encode("Once upon a time", true);
  // Something else held in the cache first: logits() must not reuse or extend it.
  session.generate({.prompt = "The dog", .max_tokens = 3});
  const std::vector<float> got = session.logits(ids);
  auto reference = models::load(stories_gguf(), {.num_threads = 1});
  const std::vector<float> want = reference->forward(ids, /*all_logits=*/true);
  ASSERT_EQ(got.size(), ids.size() * 512);
  EXPECT_EQ(got, want);
  // Generation afterwards starts from a consistent cache: greedy equals a fresh session's.
  const GenerateResponse after = session.generate({.prompt = "Once upon a time", .max_tokens = 8});
  const GenerateResponse fresh =
      chatml_session().generate({.prompt = "Once upon a time", .max_tokens = 8});
  EXPECT_EQ(after.ids, fresh.ids);
}

TEST(SessionStateless, LogitsRefuseBadIdsNamingThem) {
  Session session = chatml_session();
  EXPECT_THROW(session.logits(std::vector<int32_t>{}), Error);
  try {
    session.logits(std::vector<int32_t>{1, 7000});
    FAIL() << "an id past the vocabulary was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("7000"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace af
