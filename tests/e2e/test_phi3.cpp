// Phi-3 (Phi3ForCausalLM) fixtures made by tools/make_phi3_models.py with transformers: fused
// qkv_proj / gate_up_proj, LongRoPE (long factors past original_max_position_embeddings, short
// ones within it, the attention factor in both), partial rotary (Phi-4-mini style). Logits at
// every position within 1e-4 of transformers with the same argmax, from the HF folder and the
// GGUF file (arch "phi3", as llama.cpp's converter writes it; there also within 1e-4 of
// llama.cpp on the same file), and greedy ids equal to generate(). phi3_swa: Phi-3-mini's
// sliding window (8 over 24 ids), one pass, chunked prefill and decode through the ring.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

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

// ---- Phi-3-mini's sliding window -------------------------------------------------------------
// phi3_swa: window 8 over 24 ids. The tool checked transformers' mask: query p sees key j iff
// p - j < window (row window-1 equals the no-window logits, row window does not).

struct SwaCase {
  nlohmann::json ref;
  std::vector<int32_t> ids;
  int64_t vocab = 0, window = 0;
  std::vector<float> transformers;
};

SwaCase swa_case() {
  SwaCase c;
  c.ref = reference("phi3_swa");
  c.ids = c.ref.at("ids").get<std::vector<int32_t>>();
  c.vocab = c.ref.at("vocab_size").get<int64_t>();
  c.window = c.ref.at("sliding_window").at("window").get<int64_t>();
  c.transformers = test::read_f32((fixture("phi3_swa") / "logits_transformers_f32.bin").string());
  return c;
}

TEST(Phi3SlidingWindow, LogitsMatchTransformersPastTheWindowFromFolderAndGguf) {
  const SwaCase c = swa_case();
  ASSERT_GE(static_cast<int64_t>(c.ids.size()), 3 * c.window);
  for (const fs::path& source : sources("phi3_swa")) {
    auto model = load(source);
    expect_rows_match(model->forward(c.ids, true), c.transformers, c.vocab,
                      source.filename().string() + " (window 8, one pass)");
  }
}

TEST(Phi3SlidingWindow, ChunkedPrefillAndDecodeThroughTheRingMatchTransformers) {
  // Chunks of 5 then 6 ids (the ring wraps inside the second), then single steps past two
  // windows, from the folder and the GGUF.
  const SwaCase c = swa_case();
  for (const fs::path& source : sources("phi3_swa")) {
    auto model = load(source);
    std::vector<float> ours;
    size_t done = 0;
    for (size_t take : {size_t{5}, size_t{6}}) {
      const std::vector<float> part = model->forward(std::span(c.ids).subspan(done, take), true);
      ours.insert(ours.end(), part.begin(), part.end());
      done += take;
    }
    for (; done < c.ids.size(); ++done) {
      const std::vector<float> step = model->forward(std::span(c.ids).subspan(done, 1), false);
      ours.insert(ours.end(), step.begin(), step.end());
    }
    expect_rows_match(ours, c.transformers, c.vocab, source.filename().string() + " (chunked)");
  }
}

TEST(Phi3SlidingWindow, GreedyIdsEqualGenerate) {
  const SwaCase c = swa_case();
  const auto prompt_len = c.ref.at("generate").at("prompt_length").get<size_t>();
  const auto expected = c.ref.at("generate").at("new_ids").get<std::vector<int32_t>>();
  ASSERT_GT(static_cast<int64_t>(prompt_len), c.window);
  for (const fs::path& source : sources("phi3_swa")) {
    auto model = load(source);
    std::vector<float> logits = model->forward(std::span(c.ids).first(prompt_len), false);
    std::vector<int32_t> got;
    while (got.size() < expected.size()) {
      got.push_back(static_cast<int32_t>(argmax(logits.data(), c.vocab)));
      logits = model->forward(std::span(&got.back(), 1), false);
    }
    EXPECT_EQ(got, expected) << source;
  }
}

TEST(Phi3SlidingWindow, LlamaCppIgnoresTheWindowSoAgreesOnlyWithinIt) {
  // llama.cpp's phi3 loader reads phi3.attention.sliding_window but turns the window off:
  // the same logits as ours while every key is inside the window, different ones past it.
  const SwaCase c = swa_case();
  const std::vector<float> llama =
      test::read_f32((fixture("phi3_swa") / "logits_llamacpp.bin").string());
  auto model = load(fixture("phi3_swa") / "phi3_swa.gguf");
  const std::vector<float> ours = model->forward(c.ids, true);
  const auto head = static_cast<size_t>(c.window * c.vocab);
  expect_rows_match(std::vector<float>(ours.begin(), ours.begin() + head),
                    std::vector<float>(llama.begin(), llama.begin() + head), c.vocab,
                    "phi3_swa.gguf vs llama.cpp within the window");
  EXPECT_GT(test::compare_logits(ours, llama, c.vocab).max_abs, 0.1);
}

// This process's address space (VmSize of /proc/self/status), in bytes; -1 if unknown.
int64_t address_space_bytes() {
  std::istringstream in(test::read_text("/proc/self/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("VmSize:")) return std::stoll(line.substr(7)) * 1024;
  }
  return -1;
}

TEST(Phi3SlidingWindow, KvCacheStaysAtTheWindowOverALongContext) {
  // Phi-3-mini-4k used to be refused at its default context; now a 2^24-position sequence
  // reserves the ring's 8 rows per layer, not 2^24 (4 GiB of address space for these two
  // layers of 2 KV heads x 16 dims).
  auto model = load(fixture("phi3_swa"), 4096);
  const int64_t before = address_space_bytes();
  auto seq = model->new_sequence(int64_t{1} << 24);
  const int64_t grown = address_space_bytes() - before;
  EXPECT_EQ(seq->capacity(), int64_t{1} << 24);
  if (before >= 0) {
    EXPECT_LT(grown, 1 << 20) << "a 2^24-position sequence reserved " << grown << " bytes";
  }
}

TEST(Phi3SlidingWindow, NegativeWindowIsRefusedNamingTheKey) {
  const fs::path dir =
      edited_fixture("phi3_swa", [](nlohmann::json& c) { c["sliding_window"] = -8; });
  try {
    load(dir);
    FAIL() << "a negative sliding_window must be refused";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFormat);
    EXPECT_NE(std::string(e.what()).find("sliding_window"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("-8"), std::string::npos) << e.what();
  }
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
