// Qwen3 (Qwen3ForCausalLM) and sliding-window Mistral (MistralForCausalLM) fixtures made by
// tools/make_qwen3_mistral_models.py with transformers, converted by llama.cpp's
// convert_hf_to_gguf.py. Qwen3: per-head q/k RMSNorm, head_dim != hidden / heads, tied and
// untied; logits at every position within 1e-4 of transformers and of llama.cpp on the same
// F32 file, its F16 / Q8_0 files near llama.cpp's, greedy ids equal to generate(), and the Qwen3
// chat template as transformers renders it. Mistral: a window of 8 over 40 positions (a ring KV
// cache of 8 rows per layer), from the folder and from a GGUF that carries the window; Gemma 3's
// sliding layers share that ring.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "af/core/error.hpp"
#include "af/models/causal_lm.hpp"
#include "af/tokenizer/chat_template.hpp"
#include "test_util.hpp"

namespace af {
namespace {

namespace fs = std::filesystem;

fs::path fixture(const std::string& name) {
  return fs::path(test::fixtures_dir()) / "qwen3_mistral" / name;
}

nlohmann::json reference(const std::string& name) {
  return nlohmann::json::parse(test::read_text(fixture(name) / "reference.json"));
}

std::unique_ptr<models::CausalLM> load(const fs::path& path, int64_t context = 0,
                                       DType kv_type = DType::F32) {
  models::LoadOptions options;
  options.num_threads = 2;
  options.context_length = context;
  options.kv_type = kv_type;
  return models::load(path.string(), options);
}

int64_t argmax(const float* row, int64_t n) { return std::max_element(row, row + n) - row; }

// Every row within `tol` of the reference and with the same top-1.
void expect_rows_match(const std::vector<float>& ours, const std::vector<float>& ref, int64_t vocab,
                       const std::string& what, double tol = 1e-4) {
  ASSERT_EQ(ours.size(), ref.size()) << what;
  const auto rows = static_cast<int64_t>(ref.size()) / vocab;
  double max_abs = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* a = ours.data() + r * vocab;
    const float* b = ref.data() + r * vocab;
    for (int64_t j = 0; j < vocab; ++j) max_abs = std::max<double>(max_abs, std::fabs(a[j] - b[j]));
    EXPECT_EQ(argmax(a, vocab), argmax(b, vocab)) << what << " position " << r;
  }
  std::printf("%-44s max_abs %.3g over %lld positions\n", what.c_str(), max_abs,
              static_cast<long long>(rows));
  EXPECT_LE(max_abs, tol) << what;
}

struct Case {
  std::vector<int32_t> ids;
  int64_t vocab;
  std::vector<float> transformers;
};

Case load_case(const std::string& name) {
  const nlohmann::json ref = reference(name);
  return {ref.at("ids").get<std::vector<int32_t>>(), ref.at("vocab_size").get<int64_t>(),
          test::read_f32((fixture(name) / "logits_transformers_f32.bin").string())};
}

// Greedy continuation of ids[:prompt_length] by forward steps of one id.
std::vector<int32_t> greedy(models::CausalLM& model, const nlohmann::json& ref) {
  const auto all = ref.at("ids").get<std::vector<int32_t>>();
  const auto prompt_len = ref.at("generate").at("prompt_length").get<size_t>();
  const auto n = ref.at("generate").at("new_ids").size();
  const int64_t vocab = ref.at("vocab_size").get<int64_t>();
  std::vector<float> logits = model.forward(std::span(all).first(prompt_len), false);
  std::vector<int32_t> got;
  while (got.size() < n) {
    got.push_back(static_cast<int32_t>(argmax(logits.data(), vocab)));
    logits = model.forward(std::span(&got.back(), 1), false);
  }
  return got;
}

class Qwen3Fixture : public ::testing::TestWithParam<std::string> {};

TEST_P(Qwen3Fixture, LogitsMatchTransformersAndLlamaCppFromFolderAndGguf) {
  const Case c = load_case(GetParam());
  for (const fs::path& source :
       {fixture(GetParam()), fixture(GetParam()) / (GetParam() + ".gguf")}) {
    auto model = load(source);
    ASSERT_EQ(model->info().architecture, "Qwen3ForCausalLM");
    const std::vector<float> ours = model->forward(c.ids, true);
    expect_rows_match(ours, c.transformers, c.vocab, source.filename().string());
    if (source.extension() == ".gguf") {
      expect_rows_match(ours,
                        test::read_f32((fixture(GetParam()) / "logits_llamacpp.bin").string()),
                        c.vocab, source.filename().string() + " vs llama.cpp");
    }
    // Prefill then decode equals one prefill.
    model->reset_state();
    const size_t split = c.ids.size() - 3;
    model->forward(std::span(c.ids).first(split), false);
    for (size_t t = split; t < c.ids.size(); ++t) {
      const std::vector<float> step = model->forward(std::span(c.ids).subspan(t, 1), false);
      for (int64_t j = 0; j < c.vocab; ++j)
        ASSERT_NEAR(step[j], ours[t * c.vocab + j], 1e-4) << source << " position " << t;
    }
  }
}

TEST_P(Qwen3Fixture, GreedyIdsEqualGenerate) {
  const nlohmann::json ref = reference(GetParam());
  auto model = load(fixture(GetParam()));
  EXPECT_EQ(greedy(*model, ref), ref.at("generate").at("new_ids").get<std::vector<int32_t>>());
}

TEST_P(Qwen3Fixture, QuantizedFileIsAsCloseAsLlamaCppOnTheSameFile) {
  // llama-quantize's F16 (tied) or Q8_0 (untied) file. llama.cpp rounds activations to the
  // weights' dot type as well, so the bound is the format's error, not 1e-4.
  const nlohmann::json ref = reference(GetParam());
  const Case c = load_case(GetParam());
  std::string key;
  for (const auto& [k, v] : ref.at("logits").items())
    if (k.starts_with("llamacpp_")) key = k;
  ASSERT_FALSE(key.empty());
  const nlohmann::json& q = ref.at("logits").at(key);
  auto model = load(fixture(GetParam()) / q.at("gguf").get<std::string>());
  const std::vector<float> ours = model->forward(c.ids, true);
  const std::vector<float> llama =
      test::read_f32((fixture(GetParam()) / q.at("file").get<std::string>()).string());
  const test::LogitDiff vs_llama = test::compare_logits(ours, llama, c.vocab);
  const test::LogitDiff vs_f32 = test::compare_logits(ours, c.transformers, c.vocab);
  const test::LogitDiff llama_vs_f32 = test::compare_logits(llama, c.transformers, c.vocab);
  std::printf("%s: vs llama.cpp %.3g (top1 %lld/%lld), vs f32 %.3g, llama.cpp vs f32 %.3g\n",
              key.c_str(), vs_llama.max_abs, static_cast<long long>(vs_llama.top1_agree),
              static_cast<long long>(vs_llama.rows), vs_f32.max_abs, llama_vs_f32.max_abs);
  EXPECT_LE(vs_llama.max_abs, 0.05);
  EXPECT_LE(vs_f32.max_abs, 1.25 * llama_vs_f32.max_abs + 0.01);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Qwen3Fixture, ::testing::Values("qwen3_tied", "qwen3_untied"),
                         [](const auto& info) { return info.param; });

TEST(Qwen3, ChatTemplateRendersAsTransformersWithAndWithoutThinking) {
  const auto doc =
      nlohmann::ordered_json::parse(test::read_text(fixture("qwen3_template_renderings.json")));
  const auto tpl = tok::ChatTemplate::parse(
      test::read_text(fixture(doc.at("template").get<std::string>())), "qwen3.jinja");
  ASSERT_GE(doc.at("cases").size(), 12u);
  for (const auto& c : doc.at("cases")) {
    EXPECT_EQ(tpl.render(c.at("context")), c.at("expected").get<std::string>())
        << c.at("name").get<std::string>();
  }
}

// ---- Mistral with a sliding window ------------------------------------------------------------

const char* const kMistral = "mistral_swa";

TEST(MistralSlidingWindow, LogitsMatchTransformersPastTheWindowFromFolderAndGguf) {
  const Case c = load_case(kMistral);
  const int64_t window = reference(kMistral).at("sliding_window").get<int64_t>();
  ASSERT_GE(static_cast<int64_t>(c.ids.size()), 3 * window);
  for (const fs::path& source : {fixture(kMistral), fixture(kMistral) / "mistral_swa.gguf"}) {
    auto model = load(source);
    expect_rows_match(model->forward(c.ids, true), c.transformers, c.vocab,
                      source.filename().string() + " (one pass)");
  }
}

TEST(MistralSlidingWindow, ChunkedPrefillAndDecodeThroughTheRingMatchTransformers) {
  // Chunks of 5 then 11 ids, then single steps: the ring wraps inside chunks and between them.
  const Case c = load_case(kMistral);
  for (DType kv : {DType::F32, DType::F16, DType::Q8_0}) {
    auto model = load(fixture(kMistral), 0, kv);
    std::vector<float> ours;
    size_t done = 0;
    for (size_t take : {size_t{5}, size_t{11}}) {
      const std::vector<float> part = model->forward(std::span(c.ids).subspan(done, take), true);
      ours.insert(ours.end(), part.begin(), part.end());
      done += take;
    }
    for (; done < c.ids.size(); ++done) {
      const std::vector<float> step = model->forward(std::span(c.ids).subspan(done, 1), false);
      ours.insert(ours.end(), step.begin(), step.end());
    }
    // An f16 / q8_0 cache rounds keys and values: a looser bound, same top-1.
    const double tol = kv == DType::F32 ? 1e-4 : kv == DType::F16 ? 2e-3 : 3e-2;
    expect_rows_match(ours, c.transformers, c.vocab, "chunked, KV " + std::string(name(kv)), tol);
  }
}

TEST(MistralSlidingWindow, GreedyIdsEqualGenerate) {
  const nlohmann::json ref = reference(kMistral);
  for (const fs::path& source : {fixture(kMistral), fixture(kMistral) / "mistral_swa.gguf"}) {
    auto model = load(source);
    EXPECT_EQ(greedy(*model, ref), ref.at("generate").at("new_ids").get<std::vector<int32_t>>())
        << source;
  }
}

TEST(MistralSlidingWindow, LlamaCppIgnoresTheWindowSoAgreesOnlyWithinIt) {
  // llama.cpp runs the llama architecture with full attention whatever the file says: the same
  // logits as ours while every key is inside the window, different ones past it.
  const Case c = load_case(kMistral);
  const int64_t window = reference(kMistral).at("sliding_window").get<int64_t>();
  const std::vector<float> llama =
      test::read_f32((fixture(kMistral) / "logits_llamacpp.bin").string());
  auto model = load(fixture(kMistral) / "mistral_swa.gguf");
  const std::vector<float> ours = model->forward(c.ids, true);
  const auto head = static_cast<size_t>(window * c.vocab);
  expect_rows_match(std::vector<float>(ours.begin(), ours.begin() + head),
                    std::vector<float>(llama.begin(), llama.begin() + head), c.vocab,
                    "mistral_swa.gguf vs llama.cpp within the window");
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

TEST(MistralSlidingWindow, KvCacheStaysAtTheWindowOverALongContext) {
  // A sequence of 2^24 positions reserves the ring's 8 rows per layer, not 2^24 (4 GiB of
  // address space for these two layers of 2 x 8 dims). Then 600 positions (75 windows): the
  // last logits depend only on the last 2 x 7 + 1 ids (two layers of window 8), and RoPE is
  // relative, so those ids alone from position 0 give the same logits (up to the rounding of
  // cos/sin at far positions).
  const int64_t window = reference(kMistral).at("sliding_window").get<int64_t>();
  auto model = load(fixture(kMistral), 4096);
  const int64_t before = address_space_bytes();
  auto seq = model->new_sequence(int64_t{1} << 24);
  const int64_t grown = address_space_bytes() - before;
  EXPECT_EQ(seq->capacity(), int64_t{1} << 24);
  if (before >= 0) {
    EXPECT_LT(grown, 1 << 20) << "a 2^24-position sequence reserved " << grown << " bytes";
  }
  std::vector<int32_t> ids(600);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(3 + (i * 37 + i / 7) % 500);
  std::vector<float> last;
  for (size_t done = 0; done < ids.size(); done += 100) {
    const models::BatchItem item{seq.get(), std::span(ids).subspan(done, 100), false};
    last = model->forward_batch(std::span(&item, 1));
  }
  const size_t field = static_cast<size_t>(2 * (window - 1) + 1);
  auto fresh = load(fixture(kMistral));
  const std::vector<float> expected = fresh->forward(std::span(ids).last(field), false);
  expect_rows_match(last, expected, static_cast<int64_t>(expected.size()),
                    "600 ids vs the last 15 alone", 2e-3);
}

TEST(GemmaSlidingLayers, KeepARingOfTheWindowBesideFullGlobalLayers) {
  // tests/fixtures/models/gemma3: five sliding layers (window 8) and one global layer, one KV
  // head of 16 dims. A 2^22-position sequence reserves the global layer's 2^22 rows (512 MiB of
  // address space for its keys and values) and 8 rows for each sliding layer; every layer
  // reserved the whole context before (3 GiB).
  const fs::path dir = fs::path(test::fixtures_dir()) / "models" / "gemma3";
  auto model = load(dir);
  const int64_t before = address_space_bytes();
  auto seq = model->new_sequence(int64_t{1} << 22);
  const int64_t grown = address_space_bytes() - before;
  const int64_t one_layer = (int64_t{1} << 22) * 16 * 4 * 2;
  EXPECT_EQ(seq->capacity(), int64_t{1} << 22);
  if (before >= 0) {
    EXPECT_GE(grown, one_layer);
    EXPECT_LT(grown, one_layer + one_layer / 2) << grown << " bytes";
  }
}

TEST(MistralSlidingWindow, TruncatingPastTheRingStartsOver) {
  // Prefix reuse may keep n - 1 positions (the last one is computed again); going back further
  // than that after the ring wrapped would need overwritten keys, so the sequence starts over.
  const Case c = load_case(kMistral);
  auto model = load(fixture(kMistral));
  auto seq = model->new_sequence();
  const models::BatchItem all{seq.get(), std::span(c.ids).first(30), false};
  model->forward_batch(std::span(&all, 1));
  seq->truncate(29);
  EXPECT_EQ(seq->n_past(), 29);
  seq->truncate(20);
  EXPECT_EQ(seq->n_past(), 0);
  const models::BatchItem again{seq.get(), std::span(c.ids), true};
  expect_rows_match(model->forward_batch(std::span(&again, 1)), c.transformers, c.vocab,
                    "after truncation");
}

TEST(Qwen3MistralConvert, AfCliConvertsTheFoldersToGgufWithTheSameLogits) {
  // af-cli quantize FOLDER OUT f32 (vocabulary from the llama.cpp-converted file): q/k norms as
  // attn_{q,k}_norm for Qwen3; Mistral's q/k rows permuted as llama and its window kept as
  // llama.attention.sliding_window.
  const test::TempFolder tmp("af_qwen3_convert");
  for (const std::string name : {"qwen3_untied", "mistral_swa"}) {
    const Case c = load_case(name);
    const fs::path out = tmp / (name + ".gguf");
    const test::ShellResult r = test::run_shell(
        std::string(AF_CLI_PATH) + " quantize " + fixture(name).string() + " " + out.string() +
        " f32 --vocab-from " + (fixture(name) / (name + ".gguf")).string() + " 2>&1 >/dev/null");
    ASSERT_EQ(r.status, 0) << r.out;
    expect_rows_match(load(out)->forward(c.ids, true), c.transformers, c.vocab,
                      name + " converted by af-cli");
  }
}

}  // namespace
}  // namespace af
