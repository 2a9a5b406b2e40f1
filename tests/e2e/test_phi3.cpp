// Phi-3 (Phi3ForCausalLM) fixtures made by tools/make_phi3_models.py with transformers: fused
// qkv_proj / gate_up_proj, LongRoPE (long factors past original_max_position_embeddings, short
// ones within it, the attention factor in both), partial rotary (Phi-4-mini style). Logits at
// every position within 1e-4 of transformers with the same argmax, from the HF folder and the
// GGUF file (arch "phi3", as llama.cpp's converter writes it; there also within 1e-4 of
// llama.cpp on the same file), and greedy ids equal to generate().
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "af/core/error.hpp"
#include "af/models/causal_lm.hpp"
#include "test_util.hpp"

namespace af {
namespace {

namespace fs = std::filesystem;

fs::path fixture(const std::string& name) { return fs::path(test::fixtures_dir()) / "phi3" / name; }

nlohmann::json reference(const std::string& name) {
  return nlohmann::json::parse(test::read_text(fixture(name) / "reference.json"));
}

// The HF folder and the GGUF file written as llama.cpp's converter does (F32).
std::vector<fs::path> sources(const std::string& name) {
  return {fixture(name), fixture(name) / (name + ".gguf")};
}

std::unique_ptr<models::CausalLM> load(const fs::path& dir, int64_t context = 0) {
  models::LoadOptions options;
  options.num_threads = 2;
  options.context_length = context;
  return models::load(dir.string(), options);
}

int64_t argmax(const float* row, int64_t n) { return std::max_element(row, row + n) - row; }

// Every row within 1e-4 of the reference and with the same top-1.
void expect_rows_match(const std::vector<float>& ours, const std::vector<float>& ref, int64_t vocab,
                       const std::string& what) {
  ASSERT_EQ(ours.size(), ref.size()) << what;
  const auto rows = static_cast<int64_t>(ref.size()) / vocab;
  double max_abs = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* a = ours.data() + r * vocab;
    const float* b = ref.data() + r * vocab;
    for (int64_t j = 0; j < vocab; ++j) max_abs = std::max<double>(max_abs, std::fabs(a[j] - b[j]));
    EXPECT_EQ(argmax(a, vocab), argmax(b, vocab)) << what << " position " << r;
  }
  std::printf("%-40s max_abs %.3g over %lld positions\n", what.c_str(), max_abs,
              static_cast<long long>(rows));
  EXPECT_LE(max_abs, 1e-4) << what;
}

class Phi3Fixture : public ::testing::TestWithParam<std::string> {};

TEST_P(Phi3Fixture, LogitsMatchTransformersPastOriginalContext) {
  const nlohmann::json ref = reference(GetParam());
  const auto ids = ref.at("ids").get<std::vector<int32_t>>();
  const int64_t vocab = ref.at("vocab_size").get<int64_t>();
  const std::vector<float> expected =
      test::read_f32((fixture(GetParam()) / "logits_transformers_f32.bin").string());
  for (const fs::path& source : sources(GetParam())) {
    auto model = load(source);
    ASSERT_EQ(model->info().architecture, "Phi3ForCausalLM");
    const std::vector<float> ours = model->forward(ids, true);
    expect_rows_match(ours, expected, vocab, source.filename().string() + " (long factors)");
    if (source.extension() == ".gguf") {
      // llama.cpp on the same file (n_ctx 256: its long factors too).
      expect_rows_match(ours,
                        test::read_f32((fixture(GetParam()) / "logits_llamacpp.bin").string()),
                        vocab, source.filename().string() + " vs llama.cpp");
    }
    // Prefill then decode equals one prefill.
    model->reset_state();
    const size_t split = ids.size() - 3;
    model->forward(std::span(ids).first(split), false);
    for (size_t t = split; t < ids.size(); ++t) {
      const std::vector<float> step = model->forward(std::span(ids).subspan(t, 1), false);
      for (int64_t j = 0; j < vocab; ++j)
        ASSERT_NEAR(step[j], ours[t * vocab + j], 1e-4) << source << " position " << t;
    }
  }
}

TEST_P(Phi3Fixture, ShortFactorsWithinOriginalContext) {
  // A session no longer than original_max_position_embeddings uses short_factor, as
  // transformers does for a pass that stays within it; the attention factor still applies.
  const nlohmann::json ref = reference(GetParam());
  const nlohmann::json& short_ref = ref.at("short");
  const auto n = short_ref.at("length").get<size_t>();
  const auto all = ref.at("ids").get<std::vector<int32_t>>();
  const std::vector<int32_t> ids(all.begin(), all.begin() + static_cast<ptrdiff_t>(n));
  const auto config = nlohmann::json::parse(test::read_text(fixture(GetParam()) / "config.json"));
  const std::vector<float> expected =
      test::read_f32((fixture(GetParam()) / short_ref.at("file").get<std::string>()).string());
  for (const fs::path& source : sources(GetParam())) {
    auto model = load(source, config.at("original_max_position_embeddings").get<int64_t>());
    expect_rows_match(model->forward(ids, true), expected, ref.at("vocab_size").get<int64_t>(),
                      source.filename().string() + " (short factors)");
  }
}

TEST_P(Phi3Fixture, GreedyIdsEqualGenerate) {
  const nlohmann::json ref = reference(GetParam());
  const auto all = ref.at("ids").get<std::vector<int32_t>>();
  const auto prompt_len = ref.at("generate").at("prompt_length").get<size_t>();
  const auto expected = ref.at("generate").at("new_ids").get<std::vector<int32_t>>();
  const int64_t vocab = ref.at("vocab_size").get<int64_t>();
  auto model = load(fixture(GetParam()));
  std::vector<float> logits = model->forward(std::span(all).first(prompt_len), false);
  std::vector<int32_t> got;
  while (got.size() < expected.size()) {
    got.push_back(static_cast<int32_t>(argmax(logits.data(), vocab)));
    logits = model->forward(std::span(&got.back(), 1), false);
  }
  EXPECT_EQ(got, expected);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Phi3Fixture, ::testing::Values("phi3_longrope", "phi3_partial"),
                         [](const auto& info) { return info.param; });

TEST(Phi3, Q8_0FileMatchesLlamaCppOnTheSameFile) {
  // llama-quantize's Q8_0 of the GGUF: the fused qkv / gate_up rows are split as quantized
  // blocks. llama.cpp also rounds activations to Q8_0, so the bound is the format's error.
  const nlohmann::json ref = reference("phi3_partial");
  const auto ids = ref.at("ids").get<std::vector<int32_t>>();
  const int64_t vocab = ref.at("vocab_size").get<int64_t>();
  auto model = load(fixture("phi3_partial") / "phi3_partial.q8_0.gguf");
  const std::vector<float> ours = model->forward(ids, true);
  const std::vector<float> llama =
      test::read_f32((fixture("phi3_partial") / "logits_llamacpp_q8_0.bin").string());
  const std::vector<float> f32 =
      test::read_f32((fixture("phi3_partial") / "logits_transformers_f32.bin").string());
  const test::LogitDiff vs_llama = test::compare_logits(ours, llama, vocab);
  const test::LogitDiff vs_f32 = test::compare_logits(ours, f32, vocab);
  const test::LogitDiff llama_vs_f32 = test::compare_logits(llama, f32, vocab);
  std::printf("q8_0: vs llama.cpp %.3g (top1 %lld/%lld), vs f32 %.3g, llama.cpp vs f32 %.3g\n",
              vs_llama.max_abs, static_cast<long long>(vs_llama.top1_agree),
              static_cast<long long>(vs_llama.rows), vs_f32.max_abs, llama_vs_f32.max_abs);
  EXPECT_LE(vs_llama.max_abs, 0.05);
  EXPECT_LE(vs_f32.max_abs, 1.25 * llama_vs_f32.max_abs + 0.05);
  // Top-1 may flip only where llama.cpp's own winner leads by less than twice the bound.
  int64_t clear_flips = 0;
  for (int64_t r = 0; r < vs_llama.rows; ++r) {
    const float* a = ours.data() + r * vocab;
    const float* b = llama.data() + r * vocab;
    const int64_t top = argmax(b, vocab);
    float second = -INFINITY;
    for (int64_t j = 0; j < vocab; ++j)
      if (j != top) second = std::max(second, b[j]);
    if (argmax(a, vocab) != top && b[top] - second > 0.1f) ++clear_flips;
  }
  EXPECT_EQ(clear_flips, 0);
}

// A copy of a fixture with `edit` applied to its config.json.
fs::path edited_fixture(const std::string& name, const std::function<void(nlohmann::json&)>& edit) {
  const fs::path dir =
      fs::temp_directory_path() /
      ("af_phi3_" + name + "_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
       "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(fixture(name) / "model.safetensors", dir / "model.safetensors");
  nlohmann::json config = nlohmann::json::parse(test::read_text(fixture(name) / "config.json"));
  edit(config);
  std::ofstream(dir / "config.json") << config.dump(2);
  return dir;
}

TEST(Phi3, TransformersFourConfigGivesTheSameLogits) {
  // Released Phi-3 / Phi-4-mini configs: rope_scaling {"type": "su" | "longrope", factors},
  // original_max_position_embeddings and partial_rotary_factor at the top level.
  const fs::path dir = edited_fixture("phi3_partial", [](nlohmann::json& c) {
    nlohmann::json rope = c.at("rope_parameters");
    c["rope_theta"] = rope.at("rope_theta");
    c["rope_scaling"] = {{"type", "su"},
                         {"long_factor", rope.at("long_factor")},
                         {"short_factor", rope.at("short_factor")}};
    c.erase("rope_parameters");
  });
  const nlohmann::json ref = reference("phi3_partial");
  const auto ids = ref.at("ids").get<std::vector<int32_t>>();
  expect_rows_match(
      load(dir)->forward(ids, true),
      test::read_f32((fixture("phi3_partial") / "logits_transformers_f32.bin").string()),
      ref.at("vocab_size").get<int64_t>(), "phi3_partial (transformers 4 config)");
  fs::remove_all(dir);
}

TEST(Phi3, SlidingWindowShorterThanContextIsRefusedNamingTheKey) {
  const fs::path dir =
      edited_fixture("phi3_longrope", [](nlohmann::json& c) { c["sliding_window"] = 63; });
  try {
    load(dir);
    FAIL() << "a sliding window of 63 under a 192-position context must be refused";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("sliding_window 63"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("at most 63"), std::string::npos) << e.what();
  }
  // Within the window every key stays visible: the same logits as without a window.
  auto model = load(dir, 63);
  const nlohmann::json ref = reference("phi3_longrope");
  const auto ids = ref.at("ids").get<std::vector<int32_t>>();
  const std::vector<float> ours = model->forward(std::span(ids).first(10), true);
  auto plain = load(fixture("phi3_longrope"), 63);
  EXPECT_EQ(ours, plain->forward(std::span(ids).first(10), true));
  fs::remove_all(dir);
}

TEST(Phi3, FusedTensorOfTheWrongShapeIsNamed) {
  // 2 heads of 16 imply a qkv_proj of 96 rows; the file's has 192 (4 heads of 16).
  const fs::path dir = edited_fixture("phi3_longrope", [](nlohmann::json& c) {
    c["num_attention_heads"] = 2;
    c["num_key_value_heads"] = 2;
    c["head_dim"] = 16;
  });
  try {
    load(dir);
    FAIL() << "a qkv_proj of 192 rows must not load as 96";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFormat);
    EXPECT_NE(std::string(e.what()).find("model.layers.0.self_attn.qkv_proj.weight"),
              std::string::npos)
        << e.what();
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace af
