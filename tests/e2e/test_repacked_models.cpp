// LoadOptions::repack_weights: a model whose matmul weights were repacked at load gives exactly
// the logits of the same model used as stored, prefill and decode alike: the packed kernels and
// the legacy tiles follow one defined float order.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

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

}  // namespace
}  // namespace af
