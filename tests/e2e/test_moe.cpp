// Mixture-of-experts fixtures (tools/make_moe_fixtures.py: Qwen2-MoE, Qwen3-MoE, Mixtral; their
// F32 logits against transformers and llama.cpp are checked by test_reference_models.cpp):
// greedy ids equal transformers' generate from the HF folder and from llama.cpp's GGUF, the
// Q8_0 GGUF (quantized experts) agrees with llama.cpp on the same file, results do not depend
// on the thread count, and a bad MoE config is refused naming the field.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "af/core/error.hpp"
#include "af/io/gguf.hpp"
#include "af/io/gguf_writer.hpp"
#include "af/models/causal_lm.hpp"
#include "test_util.hpp"

namespace af {
namespace {

namespace fs = std::filesystem;

const std::string kFixtures[] = {"qwen2_moe", "qwen3_moe", "mixtral"};

fs::path fixture(const std::string& name) {
  return fs::path(test::fixtures_dir()) / "models" / name;
}

nlohmann::json reference(const std::string& name) {
  return nlohmann::json::parse(test::read_text(fixture(name) / "reference.json"));
}

std::unique_ptr<models::CausalLM> load(const fs::path& source, int threads = 2) {
  models::LoadOptions options;
  options.num_threads = threads;
  return models::load(source.string(), options);
}

int32_t argmax(const float* row, int64_t vocab) {
  return static_cast<int32_t>(std::max_element(row, row + vocab) - row);
}

class MoeFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(MoeFixture, GreedyIdsEqualGenerate) {
  const nlohmann::json ref = reference(GetParam());
  const auto prompt = ref.at("greedy").at("prompt").get<std::vector<int32_t>>();
  const auto expected = ref.at("greedy").at("ids").get<std::vector<int32_t>>();
  for (const fs::path& source :
       {fixture(GetParam()), fixture(GetParam()) / ref.at("gguf").get<std::string>()}) {
    auto model = load(source);
    const int64_t vocab = model->config().vocab_size;
    std::vector<int32_t> got;
    std::vector<float> logits = model->forward(prompt, false);
    while (got.size() < expected.size()) {
      got.push_back(argmax(logits.data(), vocab));
      logits = model->forward(std::span(&got.back(), 1), false);  // one row: the m=1 path
    }
    EXPECT_EQ(got, expected) << source;
  }
}

TEST_P(MoeFixture, Q8_0FileMatchesLlamaCppOnTheSameFile) {
  // convert_hf_to_gguf.py --outtype q8_0: experts' gate/up in Q8_0, down (16 columns, not a
  // whole block) in F16, the router F32. Both sides round activations to Q8_0 for the Q8_0
  // products; llama.cpp also rounds them to F16 for the F16 ones, which we do not. So we sit
  // far closer to llama.cpp than either sits to the float32 logits, and top-1 flips only where
  // llama.cpp's winner leads by less than 0.1 (measured: 0.031-0.043 vs llama.cpp against
  // 0.16-0.68 between llama.cpp and float32).
  const nlohmann::json ref = reference(GetParam());
  const auto ids = ref.at("ids").get<std::vector<int32_t>>();
  const int64_t vocab = ref.at("vocab_size").get<int64_t>();
  const nlohmann::json& q8 = ref.at("q8_0");
  auto model = load(fixture(GetParam()) / q8.at("gguf").get<std::string>());
  const std::vector<float> ours = model->forward(ids, true);
  const std::vector<float> llama =
      test::read_f32((fixture(GetParam()) / q8.at("file").get<std::string>()).string());
  const std::vector<float> f32 =
      test::read_f32((fixture(GetParam()) / "logits_transformers_f32.bin").string());
  const test::LogitDiff vs_llama = test::compare_logits(ours, llama, vocab);
  const test::LogitDiff llama_vs_f32 = test::compare_logits(llama, f32, vocab);
  std::printf("%s q8_0: vs llama.cpp %.3g (top1 %lld/%lld), llama.cpp vs f32 %.3g\n",
              GetParam().c_str(), vs_llama.max_abs, static_cast<long long>(vs_llama.top1_agree),
              static_cast<long long>(vs_llama.rows), llama_vs_f32.max_abs);
  EXPECT_LE(vs_llama.max_abs, 0.05);
  EXPECT_LE(vs_llama.max_abs, 0.3 * llama_vs_f32.max_abs);
  int64_t clear_flips = 0;
  for (int64_t r = 0; r < vs_llama.rows; ++r) {
    const float* a = ours.data() + r * vocab;
    const float* b = llama.data() + r * vocab;
    const int32_t top = argmax(b, vocab);
    float second = -INFINITY;
    for (int64_t j = 0; j < vocab; ++j)
      if (j != top) second = std::max(second, b[j]);
    if (argmax(a, vocab) != top && b[top] - second > 0.1f) ++clear_flips;
  }
  EXPECT_EQ(clear_flips, 0);
}

TEST_P(MoeFixture, ThreadCountDoesNotChangeLogits) {
  const nlohmann::json ref = reference(GetParam());
  const auto ids = ref.at("ids").get<std::vector<int32_t>>();
  const fs::path gguf = fixture(GetParam()) / ref.at("q8_0").at("gguf").get<std::string>();
  const std::vector<float> one = load(gguf, 1)->forward(ids, true);
  const std::vector<float> three = load(gguf, 3)->forward(ids, true);
  ASSERT_EQ(one.size(), three.size());
  EXPECT_TRUE(one == three) << "logits differ between 1 and 3 threads";
}

INSTANTIATE_TEST_SUITE_P(Fixtures, MoeFixture, ::testing::ValuesIn(kFixtures),
                         [](const auto& info) { return info.param; });

// A copy of a fixture folder with one config.json field replaced.
void copy_with_field(const std::string& name, const std::string& key, const nlohmann::json& value,
                     const test::TempFolder& dir) {
  fs::copy_file(fixture(name) / "model.safetensors", dir / "model.safetensors");
  nlohmann::json config = nlohmann::json::parse(test::read_text(fixture(name) / "config.json"));
  config[key] = value;
  std::ofstream(dir / "config.json") << config.dump();
}

TEST(MoeConfig, TopKAboveTheExpertCountIsRefusedNamingTheField) {
  test::TempFolder dir("af_moe");
  copy_with_field("qwen3_moe", "num_experts_per_tok", 9, dir);
  try {
    load(dir / "");
    FAIL() << "loaded a config with 9 of 8 experts per token";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("num_experts_per_tok"), std::string::npos) << e.what();
  }
}

TEST(MoeConfig, MlpOnlyLayerOutOfRangeIsRefused) {
  test::TempFolder dir("af_moe");
  copy_with_field("qwen2_moe", "mlp_only_layers", nlohmann::json::array({5}), dir);
  try {
    load(dir / "");
    FAIL() << "loaded mlp_only_layers [5] for 2 layers";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mlp_only_layers"), std::string::npos) << e.what();
  }
}

// A copy of a fixture's GGUF with one metadata key replaced and, when `zeros` names a tensor,
// that tensor replaced by F32 zeros of `shape`.
std::string gguf_with(const std::string& name, const std::string& key, io::GgufValue value,
                      const test::TempFolder& dir, const std::string& zeros = "",
                      const Shape& shape = Shape{}) {
  const io::GgufFile in = io::GgufFile::open((fixture(name) / (name + ".gguf")).string());
  io::GgufWriter w;
  for (const std::string& k : in.metadata_keys()) w.set(k, *in.find(k));
  w.set(key, std::move(value));
  for (const io::GgufTensorInfo& t : in.tensors()) {
    if (t.name != zeros) {
      w.add_tensor(t.name, in.tensor(t.name));
    } else {
      w.add_tensor(t.name, DType::F32, shape, [](std::span<std::byte> dst) {
        std::fill(dst.begin(), dst.end(), std::byte{0});
      });
    }
  }
  const std::string path = (dir / "edited.gguf").string();
  w.write(path);
  return path;
}

TEST(MoeGguf, ExpertCountUnlikeTheStackedTensorsIsRefusedNamingTheTensor) {
  // 5 experts in the metadata and the router, 4 in the stacked expert tensors.
  test::TempFolder dir("af_moe");
  const std::string path =
      gguf_with("mixtral", "llama.expert_count", io::gguf_uint(io::GgufType::kUint32, 5), dir,
                "blk.0.ffn_gate_inp.weight", Shape{5, 32});
  try {
    load(path);
    FAIL() << "loaded 5 experts from tensors that stack 4";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("blk.0.ffn_gate_exps.weight"), std::string::npos)
        << e.what();
  }
}

TEST(MoeGguf, MoreExpertsPerTokenThanExpertsIsRefused) {
  test::TempFolder dir("af_moe");
  const std::string path = gguf_with("qwen2_moe", "qwen2moe.expert_used_count",
                                     io::gguf_uint(io::GgufType::kUint32, 9), dir);
  try {
    load(path);
    FAIL() << "loaded 9 experts per token of 8";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("num_experts_per_tok"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace af
