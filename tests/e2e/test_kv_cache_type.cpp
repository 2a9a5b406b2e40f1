// LoadOptions::kv_type: an f16 KV cache gives the float32 cache's logits up to the f16 rounding of
// K and V (prefill and decode), and an unsupported type is refused by name.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "af/core/error.hpp"
#include "af/models/causal_lm.hpp"
#include "test_util.hpp"

namespace af {
namespace {

namespace fs = std::filesystem;

TEST(KvCacheType, F16CacheStaysCloseToTheFloat32One) {
  // stories260K, a trained model: the random fixture models magnify any rounding far more than
  // real weights do.
  const fs::path path =
      fs::path(test::testdata_dir()) / "models" / "stories260K" / "stories260K.gguf";
  if (!fs::exists(path)) GTEST_SKIP() << "no test data at " << path;
  std::vector<int32_t> ids = {1};
  for (int32_t i = 0; i < 47; ++i) ids.push_back(static_cast<int32_t>((i * 37 + 11) % 500 + 5));
  std::vector<float> prefill[2], step[2];
  for (int f16 = 0; f16 < 2; ++f16) {
    models::LoadOptions options;
    options.num_threads = 2;
    options.kv_type = f16 ? DType::F16 : DType::F32;
    auto model = models::load(path.string(), options);
    prefill[f16] = model->forward(ids, true);
    model->reset_state();
    model->forward(std::span(ids).first(ids.size() - 1), false);
    step[f16] = model->forward(std::span(ids).last(1), false);
  }
  const int64_t vocab = static_cast<int64_t>(step[0].size());
  double max_abs = 0, range = 0;
  int64_t top1 = 0;
  const auto argmax = [](const float* p, int64_t n) { return std::max_element(p, p + n) - p; };
  for (size_t row = 0; row < ids.size(); ++row) {
    const float* a = prefill[0].data() + row * vocab;
    const float* b = prefill[1].data() + row * vocab;
    for (int64_t j = 0; j < vocab; ++j) {
      max_abs = std::max<double>(max_abs, std::fabs(a[j] - b[j]));
      range = std::max<double>(range, std::fabs(a[j]));
    }
    top1 += argmax(a, vocab) == argmax(b, vocab);
  }
  double step_abs = 0;
  for (int64_t j = 0; j < vocab; ++j) {
    step_abs = std::max<double>(step_abs, std::fabs(step[0][j] - step[1][j]));
  }
  std::printf(
      "f16 KV cache vs float32: prefill max|d| %.2g (|logit| <= %.2g), top1 %lld/%zu, "
      "decode step max|d| %.2g\n",
      max_abs, range, static_cast<long long>(top1), ids.size(), step_abs);
  EXPECT_GT(max_abs, 0.0);  // really rounded
  EXPECT_LE(max_abs, 2e-3 * std::max(1.0, range));
  EXPECT_LE(step_abs, 2e-3 * std::max(1.0, range));
  EXPECT_EQ(top1, static_cast<int64_t>(ids.size()));
}

TEST(KvCacheType, UnsupportedTypeIsRefusedByName) {
  const fs::path dir = fs::path(test::fixtures_dir()) / "models" / "qwen2_256";
  models::LoadOptions options;
  options.kv_type = DType::BF16;
  try {
    models::load((dir / "q8_0.gguf").string(), options);
    FAIL() << "expected af::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bf16"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace af
