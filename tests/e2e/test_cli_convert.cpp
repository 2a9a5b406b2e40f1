// af-cli quantize HF_FOLDER OUT --type f32: llama3 RoPE scaling (rope_freqs.weight) and
// MiniCPM's muP scales survive the conversion. Our logits on the converted file must equal ours
// on the HF folder, transformers' and llama.cpp's on the same converted file (recorded by
// tools/make_convert_fixtures.py, fixtures in tests/fixtures/convert/).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "af/io/gguf.hpp"
#include "af/models/causal_lm.hpp"
#include "test_util.hpp"

namespace af {
namespace {

namespace fs = std::filesystem;

// Exit status and standard error of `af-cli quantize <args>`.
test::ShellResult quantize(const std::string& args) {
  return test::run_shell(std::string(AF_CLI_PATH) + " quantize " + args + " 2>&1 >/dev/null");
}

std::vector<float> logits_of(const std::string& source, const std::vector<int32_t>& ids) {
  models::LoadOptions options;
  options.num_threads = 2;
  return models::load(source, options)->forward(ids, true);
}

// Converts the case's HF folder to an F32 GGUF in `tmp`, checks logits, returns the GGUF path.
fs::path convert_and_compare(const std::string& name, const test::TempFolder& tmp) {
  const fs::path root = test::source_dir();
  const nlohmann::json all =
      nlohmann::json::parse(test::read_text(test::fixtures_dir() + "/convert/reference.json"));
  const nlohmann::json& c = all.at("cases").at(name);
  const std::vector<int32_t> ids = c.at("ids").get<std::vector<int32_t>>();
  const int64_t vocab = c.at("vocab_size").get<int64_t>();
  const std::string folder = (root / c.at("folder").get<std::string>()).string();
  const fs::path out = tmp / (name + ".gguf");
  std::string args = folder + " " + out.string() + " --type f32";
  if (c.at("vocab_from").is_string())
    args += " --vocab-from " + (root / c.at("vocab_from").get<std::string>()).string();
  const test::ShellResult r = quantize(args);
  EXPECT_EQ(r.status, 0) << r.out;
  if (r.status != 0) return out;

  const std::vector<float> from_gguf = logits_of(out.string(), ids);
  const std::vector<float> from_hf = logits_of(folder, ids);
  std::vector<float> transformers =
      test::read_f32((root / c.at("transformers_f32").get<std::string>()).string());
  transformers.resize(ids.size() * vocab);  // models/ fixtures hold more positions
  const std::vector<float> llamacpp =
      test::read_f32((root / c.at("llamacpp").get<std::string>()).string());
  EXPECT_EQ(llamacpp.size(), ids.size() * vocab);
  EXPECT_EQ(from_gguf.size(), ids.size() * vocab);
  if (from_gguf.size() != ids.size() * vocab || llamacpp.size() != from_gguf.size()) return out;

  const test::LogitDiff vs_hf = test::compare_logits(from_gguf, from_hf, vocab);
  const test::LogitDiff vs_tf = test::compare_logits(from_gguf, transformers, vocab);
  const test::LogitDiff vs_llama = test::compare_logits(from_gguf, llamacpp, vocab);
  std::printf(
      "%-13s converted f32 GGUF: vs our HF-folder load %.3g (%lld/%lld top-1), vs transformers "
      "%.3g (%lld/%lld), vs llama.cpp on the same file %.3g (%lld/%lld)\n",
      name.c_str(), vs_hf.max_abs, static_cast<long long>(vs_hf.top1_agree),
      static_cast<long long>(vs_hf.rows), vs_tf.max_abs, static_cast<long long>(vs_tf.top1_agree),
      static_cast<long long>(vs_tf.rows), vs_llama.max_abs,
      static_cast<long long>(vs_llama.top1_agree), static_cast<long long>(vs_llama.rows));
  // Same weights, same float32 arithmetic except the RoPE frequencies (divided by rope_freqs
  // instead of transformers' formula): measured <= 1e-6.
  EXPECT_LE(vs_hf.max_abs, 1e-5) << name;
  EXPECT_LE(vs_tf.max_abs, 1e-4) << name;
  EXPECT_LE(vs_llama.max_abs, 1e-4) << name;  // F32 weights and KV cache: measured <= 2e-6
  EXPECT_EQ(vs_hf.top1_agree, vs_hf.rows) << name;
  EXPECT_EQ(vs_tf.top1_agree, vs_tf.rows) << name;
  EXPECT_EQ(vs_llama.top1_agree, vs_llama.rows) << name;
  return out;
}

// llama3 RoPE scaling is stored as head_dim/2 per-frequency divisors, as llama.cpp's converter
// writes them: 1 for short wavelengths, `factor` for long ones, a blend in between.
void expect_llama3_divisors(const fs::path& gguf, int64_t head_dim, float factor) {
  if (!fs::exists(gguf)) return;
  const io::GgufFile f = io::GgufFile::open(gguf.string());
  ASSERT_TRUE(f.has_tensor("rope_freqs.weight"));
  const Tensor t = f.tensor("rope_freqs.weight");
  ASSERT_EQ(t.dtype(), DType::F32);
  ASSERT_EQ(t.shape(), Shape({head_dim / 2}));
  std::vector<float> v(static_cast<size_t>(head_dim / 2));
  std::memcpy(v.data(), t.data(), v.size() * sizeof(float));
  EXPECT_EQ(v.front(), 1.0f);
  EXPECT_EQ(v.back(), factor);
  EXPECT_TRUE(std::any_of(v.begin(), v.end(), [&](float x) { return x > 1 && x < factor; }));
  EXPECT_TRUE(std::is_sorted(v.begin(), v.end()));
  // No scaling metadata: llama.cpp would apply it on top of the divisors.
  EXPECT_EQ(f.find("llama.rope.scaling.type"), nullptr);
}

TEST(CliConvert, Llama32StyleRopeScalingTiedBf16WithTokenizerJson) {
  // transformers-4 config layout (rope_theta + rope_scaling), no head_dim, BF16 weights.
  test::TempFolder tmp("af_e2e_convert");
  const fs::path out = convert_and_compare("llama32_tied", tmp);
  expect_llama3_divisors(out, 8, 32.0f);
  if (!fs::exists(out)) return;
  const io::GgufFile f = io::GgufFile::open(out.string());
  EXPECT_FALSE(f.has_tensor("output.weight"));  // tied
  EXPECT_EQ(f.tensor("token_embd.weight").dtype(), DType::F32);
  EXPECT_FLOAT_EQ(static_cast<float>(f.find("llama.rope.freq_base")->as_float("")), 500000.0f);
  EXPECT_EQ(f.find("tokenizer.ggml.tokens")->as_array("").size(), 512u);
}

TEST(CliConvert, LlamaRopeParametersLlama3) {
  // transformers-5 layout (rope_parameters) with head_dim 16; untied.
  test::TempFolder tmp("af_e2e_convert");
  expect_llama3_divisors(convert_and_compare("llama_gqa", tmp), 16, 8.0f);
}

TEST(CliConvert, MiniCPMScalesAndInterleavedRope) {
  test::TempFolder tmp("af_e2e_convert");
  const fs::path out = convert_and_compare("minicpm", tmp);
  if (!fs::exists(out)) return;
  const io::GgufFile f = io::GgufFile::open(out.string());
  EXPECT_EQ(f.find("general.architecture")->as_string(""), "minicpm");
  // config.json: scale_emb 12, scale_depth 1.4, dim_model_base 32, hidden 64, 2 layers.
  EXPECT_FLOAT_EQ(static_cast<float>(f.find("minicpm.embedding_scale")->as_float("")), 12.0f);
  EXPECT_FLOAT_EQ(static_cast<float>(f.find("minicpm.residual_scale")->as_float("")),
                  static_cast<float>(1.4 / std::sqrt(2.0)));
  EXPECT_FLOAT_EQ(static_cast<float>(f.find("minicpm.logit_scale")->as_float("")), 2.0f);
  EXPECT_EQ(f.find("minicpm.vocab_size"), nullptr);  // the converter writes it for llama only
}

TEST(CliConvert, MiniCPM4LongRopeShortFactors) {
  // max_position_embeddings == original_max_position_embeddings: HF and llama.cpp (up to
  // context_length) both use the short factors, without a cos/sin scale.
  test::TempFolder tmp("af_e2e_convert");
  const fs::path out = convert_and_compare("minicpm4", tmp);
  if (!fs::exists(out)) return;
  const io::GgufFile f = io::GgufFile::open(out.string());
  EXPECT_EQ(f.find("minicpm.rope.scaling.type")->as_string(""), "longrope");
  const Tensor s = f.tensor("rope_factors_short.weight");
  const Tensor l = f.tensor("rope_factors_long.weight");
  ASSERT_EQ(s.shape(), Shape({8}));
  ASSERT_EQ(l.shape(), Shape({8}));
  float last_short, last_long;
  std::memcpy(&last_short, s.data() + 7 * sizeof(float), sizeof(float));
  std::memcpy(&last_long, l.data() + 7 * sizeof(float), sizeof(float));
  EXPECT_EQ(last_short, 4.25f);  // config.json's short_factor / long_factor
  EXPECT_EQ(last_long, 18.0f);
  EXPECT_FALSE(f.has_tensor("rope_freqs.weight"));
}

// A copy of a fixture folder whose config.json `edit` changes.
class EditedFolder {
 public:
  EditedFolder(const test::TempFolder& tmp, const std::string& fixture, const std::string& name)
      : dir_(tmp / name) {
    const fs::path from = fs::path(test::fixtures_dir()) / "models" / fixture;
    fs::create_directories(dir_);
    fs::copy_file(from / "model.safetensors", dir_ / "model.safetensors");
    config = nlohmann::json::parse(test::read_text(from / "config.json"));
  }
  std::string write() const {
    std::ofstream(dir_ / "config.json") << config.dump();
    return dir_.string();
  }
  nlohmann::json config;

 private:
  fs::path dir_;
};

TEST(CliConvert, UnconvertibleRopeAndArchitecturesFailWithClearErrors) {
  test::TempFolder tmp("af_e2e_convert");
  const fs::path models = fs::path(test::fixtures_dir()) / "models";
  const std::string vocab =
      " --type f32 --vocab-from " + (models / "minicpm/minicpm.gguf").string();
  const std::string out = (tmp / "x.gguf").string();
  auto expect_refused = [&](const std::string& folder, const std::string& message) {
    const test::ShellResult r = quantize(folder + " " + out + vocab);
    EXPECT_EQ(r.status, 1) << folder;
    EXPECT_NE(r.out.find(message), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("config.json"), std::string::npos) << r.out;  // names the file
  };
  // LongRoPE past the original context: HF switches to the long factors and scales cos/sin,
  // which llama.cpp's GGUF cannot express.
  EditedFolder long_ctx(tmp, "minicpm4", "long_ctx");
  long_ctx.config["max_position_embeddings"] = 512;
  expect_refused(long_ctx.write(),
                 "max_position_embeddings 512 > original_max_position_embeddings");
  EditedFolder short_list(tmp, "minicpm4", "short_list");
  short_list.config["rope_scaling"]["short_factor"].erase(0);
  expect_refused(short_list.write(), "\"short_factor\" as a list of 8 numbers");
  // llama3 scaling on an architecture whose llama.cpp graph has no rope_freqs.
  EditedFolder minicpm_llama3(tmp, "minicpm", "minicpm_llama3");
  minicpm_llama3.config["rope_scaling"] = {{"rope_type", "llama3"},
                                           {"factor", 8.0},
                                           {"low_freq_factor", 1.0},
                                           {"high_freq_factor", 4.0},
                                           {"original_max_position_embeddings", 64}};
  expect_refused(minicpm_llama3.write(),
                 "RoPE scaling 'llama3' cannot be converted to GGUF for minicpm");
  // llama3 without one of its parameters.
  EditedFolder incomplete(tmp, "llama_gqa", "incomplete");
  incomplete.config["rope_parameters"].erase("high_freq_factor");
  expect_refused(incomplete.write(), "\"high_freq_factor\"");
  // Other RoPE types stay refused (YaRN here).
  EditedFolder yarn(tmp, "llama_gqa", "yarn");
  yarn.config["rope_parameters"] = {
      {"rope_type", "yarn"}, {"rope_theta", 10000.0}, {"factor", 4.0}};
  expect_refused(yarn.write(), "RoPE scaling 'yarn' cannot be converted to GGUF for llama");
  // An architecture the converter does not know.
  EditedFolder gpt2(tmp, "minicpm", "gpt2");
  gpt2.config["architectures"] = {"GPT2LMHeadModel"};
  expect_refused(gpt2.write(), "'GPT2LMHeadModel' cannot be converted");
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace
}  // namespace af
