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
  const test::LogitDiff pre = test::compare_logits(prefill[1], prefill[0], vocab);
  const test::LogitDiff dec = test::compare_logits(step[1], step[0], vocab);
  const double max_abs = pre.max_abs, range = pre.ref_range, step_abs = dec.max_abs;
  const int64_t top1 = pre.top1_agree;
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
