// The real trained stories260K model, from GGUF and from the HF folder, against the float64
// reference in ../shared/testdata/models/stories260K/expected_once_upon_a_time.txt.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "af/core/error.hpp"
#include "af/models/causal_lm.hpp"
#include "test_util.hpp"

namespace af {
namespace {

struct Expected {
  std::vector<int32_t> prompt;     // with BOS
  std::vector<int32_t> generated;  // 48 greedy ids
  std::vector<double> logits;      // 512 logits after the prompt
};

std::vector<int32_t> ints_after(const std::string& text, const std::string& label) {
  size_t at = text.find(label);
  EXPECT_NE(at, std::string::npos) << label;
  std::istringstream line(text.substr(at + label.size(), text.find('\n', at) - at - label.size()));
  std::vector<int32_t> ids;
  int32_t id;
  while (line >> id) ids.push_back(id);
  return ids;
}

Expected read_expected() {
  const std::string text =
      test::read_text(test::testdata_dir() + "/models/stories260K/expected_once_upon_a_time.txt");
  Expected e;
  e.prompt = ints_after(text, "prompt_tokens_with_bos:");
  e.generated = ints_after(text, "greedy_generated_tokens (48):");
  size_t at = text.find('\n', text.find("all_logits_after_prompt"));
  std::istringstream rest(text.substr(at));
  double v;
  while (rest >> v) e.logits.push_back(v);
  return e;
}

models::LoadOptions options(int threads, const std::string& isa = "", int64_t context = 0) {
  models::LoadOptions o;
  o.num_threads = threads;
  o.isa = isa;
  o.context_length = context;
  return o;
}

int32_t argmax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

class Stories260K : public ::testing::TestWithParam<std::string> {};

TEST_P(Stories260K, LogitsAndGreedyTokensMatchReference) {
  const std::string path = test::testdata_dir() + "/models/" + GetParam();
  AF_REQUIRE_TESTDATA(path);
  Expected expected = read_expected();
  ASSERT_EQ(expected.prompt.size(), 5u);
  ASSERT_EQ(expected.generated.size(), 48u);
  ASSERT_EQ(expected.logits.size(), 512u);

  for (int threads : {1, 2}) {
    auto model = models::load(path, options(threads));
    ASSERT_EQ(model->config().vocab_size, 512);
    ASSERT_EQ(model->config().num_layers, 5);
    std::vector<float> logits = model->forward_step(expected.prompt);
    ASSERT_EQ(logits.size(), 512u);
    double max_err = 0;
    for (size_t i = 0; i < 512; ++i)
      max_err = std::max(max_err, std::fabs(logits[i] - expected.logits[i]));
    EXPECT_LE(max_err, 1e-4) << GetParam() << " threads " << threads;

    std::vector<int32_t> generated;
    int32_t next = argmax(logits);
    for (int step = 0; step < 48; ++step) {
      generated.push_back(next);
      int32_t id = next;
      next = argmax(model->forward_step({&id, 1}));
    }
    EXPECT_EQ(generated, expected.generated) << GetParam() << " threads " << threads;

    // reset_state forgets the sequence: the prompt gives the same logits again.
    model->reset_state();
    EXPECT_EQ(model->forward_step(expected.prompt), logits);
  }
}

TEST_P(Stories260K, EveryIsaGivesTheSameTokens) {
  const std::string path = test::testdata_dir() + "/models/" + GetParam();
  AF_REQUIRE_TESTDATA(path);
  Expected expected = read_expected();
  std::vector<float> reference;
  for (const char* isa : {"scalar", "avx2", "avx512"}) {
    std::unique_ptr<models::CausalLM> model;
    try {
      model = models::load(path, options(2, isa));
    } catch (const Error& e) {
      if (e.code() == ErrorCode::kUnsupported) continue;  // this CPU lacks the ISA
      throw;
    }
    std::vector<float> logits = model->forward(expected.prompt, true);
    if (reference.empty()) {
      reference = logits;
      continue;
    }
    double max_err = 0;
    for (size_t i = 0; i < logits.size(); ++i)
      max_err = std::max<double>(max_err, std::fabs(logits[i] - reference[i]));
    EXPECT_LE(max_err, 1e-4) << isa;
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, Stories260K,
                         ::testing::Values("stories260K/stories260K.gguf", "stories260K-hf"),
                         [](const auto& info) {
                           return std::string(info.param.find("gguf") != std::string::npos ? "gguf"
                                                                                           : "hf");
                         });

TEST(Stories260K, ContextOverflowAndBadIdsAreErrors) {
  const std::string path = test::testdata_dir() + "/models/stories260K-hf";
  AF_REQUIRE_TESTDATA(path);
  auto model = models::load(path, options(0, "", 4));
  std::vector<int32_t> too_long = {1, 2, 3, 4, 5};
  EXPECT_THROW(model->forward_step(too_long), Error);
  EXPECT_EQ(model->n_past(), 0);
  std::vector<int32_t> bad = {1, 512};
  try {
    model->forward_step(bad);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("512"), std::string::npos) << e.what();
  }
  EXPECT_EQ(model->n_past(), 0);
  std::vector<int32_t> empty;
  EXPECT_THROW(model->forward_step(empty), Error);
}

}  // namespace
}  // namespace af
