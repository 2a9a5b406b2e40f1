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
#include "test_util.hpp"

namespace af {
namespace {

namespace fs = std::filesystem;

TEST(RepackedModels, LogitsMatchTheModelAsStored) {
  const fs::path dir = fs::path(test::fixtures_dir()) / "models" / "qwen2_256";
  const nlohmann::json ref = nlohmann::json::parse(test::read_text(dir / "quant_reference.json"));
  const std::vector<int32_t> ids = ref.at("ids").get<std::vector<int32_t>>();
  for (const std::string type : {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q4_k_m"}) {
    std::vector<float> logits[2];
    std::vector<float> last_step[2];
    for (int repack = 0; repack < 2; ++repack) {
      models::LoadOptions options;
      options.num_threads = 2;
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
    std::printf("%-7s repacked vs as stored: max|d| %.2g\n", type.c_str(), max_abs);
    EXPECT_EQ(max_abs, 0.0) << type;
  }
}

// BF16 weights with bf16 dot products (quantize "bf16"): repacked at load, a prefill gives the
// bits of the unpacked weight (whose tiles are packed during the call); a decode step's packed
// row is the same sums in lanes rather than a horizontal sum, so it is close, not equal.
TEST(RepackedModels, Bf16DotProductsPackedAtLoadOrDuringPrefill) {
  const fs::path dir = fs::path(test::fixtures_dir()) / "models" / "qwen2_256";
  const nlohmann::json ref = nlohmann::json::parse(test::read_text(dir / "quant_reference.json"));
  const std::vector<int32_t> ids = ref.at("ids").get<std::vector<int32_t>>();
  ASSERT_GE(ids.size(), 5u);  // prefills of at least 4 rows take the packed kernels
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
  double max_abs = 0, range = 0;
  for (size_t i = 0; i < last_step[0].size(); ++i) {
    max_abs = std::max<double>(max_abs, std::fabs(last_step[0][i] - last_step[1][i]));
    range = std::max<double>(range, std::fabs(last_step[0][i]));
  }
  std::printf("bf16 dot decode step, repacked vs as stored: max|d| %.2g (|logit| <= %.2g)\n",
              max_abs, range);
  EXPECT_LE(max_abs, 1e-4 * std::max(1.0, range));
  const auto top = [](const std::vector<float>& v) {
    return std::max_element(v.begin(), v.end()) - v.begin();
  };
  EXPECT_EQ(top(last_step[0]), top(last_step[1]));
}

}  // namespace
}  // namespace af
