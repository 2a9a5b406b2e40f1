// LoadOptions::repack_weights: a model whose matmul weights were repacked at load gives exactly
// the logits of the same model used as stored, prefill and decode alike: the packed kernels and
// the legacy tiles follow one defined float order.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "af/models/causal_lm.hpp"
#include "backend/cpu/dispatch.hpp"
#include "test_util.hpp"

namespace af {
namespace {

namespace fs = std::filesystem;

// Each type's logits (prefill, then one decode step) with weights repacked at load must equal
// those of the weights as stored, on the kernels of `isa` ("" the best).
void expect_repacked_matches_stored(const std::vector<std::string>& types, const std::string& isa) {
  const fs::path dir = fs::path(test::fixtures_dir()) / "models" / "qwen2_256";
  const nlohmann::json ref = nlohmann::json::parse(test::read_text(dir / "quant_reference.json"));
  const std::vector<int32_t> ids = ref.at("ids").get<std::vector<int32_t>>();
  for (const std::string& type : types) {
    std::vector<float> logits[2];
    std::vector<float> last_step[2];
    for (int repack = 0; repack < 2; ++repack) {
      models::LoadOptions options;
      options.num_threads = 2;
      options.isa = isa;
      options.repack_weights = repack == 1;
      auto model = models::load((dir / (type + ".gguf")).string(), options);
      logits[repack] = model->forward(ids, true);
      // Decode: all but the last id as a prompt, then the last one alone.
      model->reset_state();
      model->forward(std::span(ids).first(ids.size() - 1), false);
      last_step[repack] = model->forward(std::span(ids).last(1), false);
    }
    ASSERT_EQ(logits[0].size(), logits[1].size());
    double max_abs = 0;
    for (size_t i = 0; i < logits[0].size(); ++i) {
      max_abs = std::max<double>(max_abs, std::fabs(logits[0][i] - logits[1][i]));
    }
    for (size_t i = 0; i < last_step[0].size(); ++i) {
      max_abs = std::max<double>(max_abs, std::fabs(last_step[0][i] - last_step[1][i]));
    }
    std::printf("%-7s %s repacked vs as stored: max|d| %.2g\n", type.c_str(),
                isa.empty() ? "best" : isa.c_str(), max_abs);
    EXPECT_EQ(max_abs, 0.0) << type << " " << isa;
  }
}

TEST(RepackedModels, LogitsMatchTheModelAsStored) {
  expect_repacked_matches_stored(
      {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q4_k_m", "q5_k_m", "q6_k"}, "");
}

// The K-quants repacked for the 256-bit kernels (AVX-VNNI where the CPU has it, else AVX2).
TEST(RepackedModels, KQuantsOnTheAvx2KernelsMatchTheModelAsStored) {
  if (!cpu::isa_supported(cpu::Isa::kAvx2)) GTEST_SKIP() << "no AVX2 on this CPU";
  expect_repacked_matches_stored({"q4_k_m", "q5_k_m", "q6_k"}, "avx2");
}

// BF16 weights with bf16 dot products (quantize "bf16"): repacked at load or packed tile by tile
// during each call, prefill and decode give the same bits.
TEST(RepackedModels, Bf16DotProductsPackedAtLoadOrDuringTheCall) {
  const fs::path dir = fs::path(test::fixtures_dir()) / "models" / "qwen2_256";
  const nlohmann::json ref = nlohmann::json::parse(test::read_text(dir / "quant_reference.json"));
  const std::vector<int32_t> ids = ref.at("ids").get<std::vector<int32_t>>();
  const fs::path out =
      fs::temp_directory_path() / ("af_e2e_bf16_" + std::to_string(::getpid()) + ".gguf");
  const test::ShellResult made =
      test::run_shell(std::string(AF_CLI_PATH) + " quantize " + (dir / "q8_0.gguf").string() + " " +
                      out.string() + " --type bf16 2>&1");
  ASSERT_EQ(made.status, 0) << made.out;
  std::vector<float> logits[2], last_step[2];
  for (int repack = 0; repack < 2; ++repack) {
    models::LoadOptions options;
    options.num_threads = 2;
    options.quantize = "bf16";
    options.repack_weights = repack == 1;
    auto model = models::load(out.string(), options);
    logits[repack] = model->forward(ids, true);
    model->reset_state();
    model->forward(std::span(ids).first(ids.size() - 1), false);
    last_step[repack] = model->forward(std::span(ids).last(1), false);
  }
  std::error_code ec;
  fs::remove(out, ec);
  ASSERT_EQ(logits[0].size(), logits[1].size());
  EXPECT_EQ(0, std::memcmp(logits[0].data(), logits[1].data(), logits[0].size() * 4));
  ASSERT_EQ(last_step[0].size(), last_step[1].size());
  EXPECT_EQ(0, std::memcmp(last_step[0].data(), last_step[1].data(), last_step[0].size() * 4));
}

// F16 weights in the dense packed layout: each output is one fma chain along k instead of 16
// lanes summed across, so the logits are close to the unpacked model's, not equal.
TEST(RepackedModels, DenseF16PackedIsCloseToTheModelAsStored) {
  const fs::path dir = fs::path(test::fixtures_dir()) / "models" / "qwen2_256";
  const nlohmann::json ref = nlohmann::json::parse(test::read_text(dir / "quant_reference.json"));
  const std::vector<int32_t> ids = ref.at("ids").get<std::vector<int32_t>>();
  const fs::path out =
      fs::temp_directory_path() / ("af_e2e_f16_" + std::to_string(::getpid()) + ".gguf");
  const test::ShellResult made =
      test::run_shell(std::string(AF_CLI_PATH) + " quantize " + (dir / "q8_0.gguf").string() + " " +
                      out.string() + " --type f16 2>&1");
  ASSERT_EQ(made.status, 0) << made.out;
  std::vector<float> logits[2];
  for (int repack = 0; repack < 2; ++repack) {
    models::LoadOptions options;
    options.num_threads = 2;
    options.repack_weights = repack == 1;
    logits[repack] = models::load(out.string(), options)->forward(ids, true);
  }
  std::error_code ec;
  fs::remove(out, ec);
  ASSERT_EQ(logits[0].size(), logits[1].size());
  const int64_t vocab = static_cast<int64_t>(logits[0].size() / ids.size());
  const test::LogitDiff d = test::compare_logits(logits[1], logits[0], vocab);
  const double max_abs = d.max_abs;
  const int64_t top1_agree = d.top1_agree;
  std::printf("f16 dense packed vs as stored: max|d| %.2g, top1 %lld/%zu\n", max_abs,
              static_cast<long long>(top1_agree), ids.size());
  EXPECT_LE(max_abs, 1e-4);
  EXPECT_EQ(top1_agree, static_cast<int64_t>(ids.size()));
}

}  // namespace
}  // namespace af
