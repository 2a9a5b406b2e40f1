// Gemma-family fixtures (tools/make_gemma_fixtures.py; their logits are checked by
// test_reference_models.cpp): greedy ids equal transformers' generate from the HF folder and
// from llama.cpp's GGUF, prefill in uneven chunks (queries that start inside and past the sliding
// window) equals one pass, and the f16 KV cache stays close.
#include <algorithm>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "af/models/causal_lm.hpp"
#include "test_util.hpp"

namespace af {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> gemma_fixtures() {
  std::vector<std::string> names;
  const fs::path root = test::fixtures_dir() + "/models";
  for (const char* name : {"gemma3", "gemma2"}) {
    if (fs::exists(root / name / "reference.json")) names.emplace_back(name);
  }
  return names;
}

struct Fixture {
  fs::path dir;
  nlohmann::json ref;
  std::vector<std::string> sources;  // the HF folder, then the GGUF
};

Fixture open_fixture(const std::string& name) {
  Fixture f;
  f.dir = fs::path(test::fixtures_dir()) / "models" / name;
  f.ref = nlohmann::json::parse(test::read_text(f.dir / "reference.json"));
  f.sources = {f.dir.string(), (f.dir / f.ref.at("gguf").get<std::string>()).string()};
  return f;
}

std::unique_ptr<models::CausalLM> load(const std::string& source, DType kv_type = DType::F32) {
  models::LoadOptions options;
  options.num_threads = 2;
  options.kv_type = kv_type;
  return models::load(source, options);
}

int32_t argmax(const float* row, int64_t vocab) {
  return static_cast<int32_t>(std::max_element(row, row + vocab) - row);
}

class GemmaFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(GemmaFixture, GreedyIdsEqualGenerate) {
  const Fixture f = open_fixture(GetParam());
  const auto prompt = f.ref.at("greedy").at("prompt").get<std::vector<int32_t>>();
  const auto expected = f.ref.at("greedy").at("ids").get<std::vector<int32_t>>();
  const int64_t window = nlohmann::json::parse(test::read_text(f.dir / "config.json"))
                             .value("sliding_window", int64_t{0});
  // The decode steps must cross the window for this to check the sliding layers.
  ASSERT_GT(static_cast<int64_t>(prompt.size() + expected.size()), window);
  for (const std::string& source : f.sources) {
    auto model = load(source);
    const int64_t vocab = model->config().vocab_size;
    std::vector<int32_t> got;
    std::vector<float> logits = model->forward(prompt, false);
    while (got.size() < expected.size()) {
      got.push_back(argmax(logits.data(), vocab));
      logits = model->forward(std::span(&got.back(), 1), false);
    }
    EXPECT_EQ(got, expected) << source;
  }
}

TEST_P(GemmaFixture, ChunkedPrefillEqualsOnePass) {
  const Fixture f = open_fixture(GetParam());
  const auto ids = f.ref.at("ids").get<std::vector<int32_t>>();
  for (const std::string& source : f.sources) {
    auto model = load(source);
    const int64_t vocab = model->config().vocab_size;
    const std::vector<float> whole = model->forward(ids, true);
    model->reset_state();
    // Pieces of 5 ids: some start before the window's end and finish past it.
    for (size_t begin = 0; begin < ids.size(); begin += 5) {
      const size_t n = std::min<size_t>(5, ids.size() - begin);
      const std::vector<float> part = model->forward(std::span(ids).subspan(begin, n), true);
      for (size_t i = 0; i < part.size(); ++i) {
        ASSERT_NEAR(part[i], whole[begin * vocab + i], 1e-4)
            << source << " position " << begin + i / vocab;
      }
    }
  }
}

TEST_P(GemmaFixture, F16KvCacheStaysClose) {
  const Fixture f = open_fixture(GetParam());
  const auto ids = f.ref.at("ids").get<std::vector<int32_t>>();
  const std::vector<float> expected =
      test::read_f32((f.dir / "logits_transformers_f32.bin").string());
  auto model = load(f.sources[1], DType::F16);
  std::vector<float> got = model->forward(std::span(ids).first(ids.size() - 4), true);
  for (size_t t = ids.size() - 4; t < ids.size(); ++t) {  // decode past the window, too
    const std::vector<float> step = model->forward(std::span(ids).subspan(t, 1), false);
    got.insert(got.end(), step.begin(), step.end());
  }
  ASSERT_EQ(got.size(), expected.size());
  double max_abs = 0;
  for (size_t i = 0; i < got.size(); ++i)
    max_abs = std::max<double>(max_abs, std::fabs(got[i] - expected[i]));
  EXPECT_LT(max_abs, 2e-2);
  EXPECT_GT(max_abs, 0.0);  // the cache really is f16
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GemmaFixture, ::testing::ValuesIn(gemma_fixtures()),
                         [](const auto& info) { return info.param; });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(GemmaFixture);

TEST(GemmaFixtures, ArePresent) { EXPECT_FALSE(gemma_fixtures().empty()); }

}  // namespace
}  // namespace af
