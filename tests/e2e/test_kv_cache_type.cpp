// LoadOptions::kv_type / kv_type_k / kv_type_v: f16 and q8_0 KV caches give the float32 cache's
// logits up to the rounding of K and V (prefill and decode), batches and prefix reuse work with
// every type, and an unsupported type is refused by name.
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

// The logits of `ids` (all positions, one prefill) and of the last id as a decode step after
// the others, with keys of k_type and values of v_type.
struct CacheRun {
  std::vector<float> prefill, step;
};
CacheRun run_with_cache(const std::string& path, DType k_type, DType v_type,
                        const std::vector<int32_t>& ids) {
  models::LoadOptions options;
  options.num_threads = 2;
  options.kv_type_k = k_type;
  options.kv_type_v = v_type;
  auto model = models::load(path, options);
  CacheRun r;
  r.prefill = model->forward(ids, true);
  model->reset_state();
  model->forward(std::span(ids).first(ids.size() - 1), false);
  r.step = model->forward(std::span(ids).last(1), false);
  return r;
}

// q8_0 keys and/or values (llama.cpp's -ctk/-ctv q8_0) stay close to the float32 cache on a
// trained model (stories260K, head_dim 8: one short q8_0 block per head) and on a q8_0 GGUF
// fixture (head_dim 64); the bounds are about 3x the errors measured when this was written
// (stories260K: prefill max|d| 0.24 of |logit| <= 17 for q8_0/q8_0, 0.008 for f16; qwen2_256
// q8_0.gguf: 0.17 of 5 for q8_0/q8_0, 0.095 for f16).
TEST(KvCacheType, Q8_0CacheStaysCloseToTheFloat32One) {
  struct Model {
    std::string path;
    double bound;  // max |d logit| / max(1, |logit| range)
  };
  const Model paths[] = {
      {test::testdata_dir() + "/models/stories260K/stories260K.gguf", 2e-2},
      // random weights magnify rounding (its f16 cache alone differs by 0.095 of 5)
      {test::fixtures_dir() + "/models/qwen2_256/q8_0.gguf", 1e-1},
  };
  for (const Model& m : paths) {
    if (!fs::exists(m.path)) GTEST_SKIP() << "no test data at " << m.path;
    std::vector<int32_t> ids = {1};
    for (int32_t i = 0; i < 47; ++i) ids.push_back(static_cast<int32_t>((i * 37 + 11) % 200 + 5));
    const CacheRun exact = run_with_cache(m.path, DType::F32, DType::F32, ids);
    const int64_t vocab = static_cast<int64_t>(exact.step.size());
    struct Types {
      DType k, v;
    };
    for (Types t : {Types{DType::F16, DType::F16}, Types{DType::Q8_0, DType::Q8_0},
                    Types{DType::Q8_0, DType::F16}, Types{DType::F32, DType::Q8_0}}) {
      const CacheRun r = run_with_cache(m.path, t.k, t.v, ids);
      const test::LogitDiff pre = test::compare_logits(r.prefill, exact.prefill, vocab);
      const test::LogitDiff dec = test::compare_logits(r.step, exact.step, vocab);
      std::printf(
          "%s K/V %s/%s vs f32: prefill max|d| %.3g (|logit| <= %.3g), top1 %lld/%zu, "
          "decode step max|d| %.3g\n",
          fs::path(m.path).filename().c_str(), std::string(name(t.k)).c_str(),
          std::string(name(t.v)).c_str(), pre.max_abs, pre.ref_range,
          static_cast<long long>(pre.top1_agree), ids.size(), dec.max_abs);
      EXPECT_GT(pre.max_abs, 0.0);  // really rounded
      EXPECT_LE(pre.max_abs, m.bound * std::max(1.0, pre.ref_range)) << m.path;
      EXPECT_LE(dec.max_abs, m.bound * std::max(1.0, pre.ref_range)) << m.path;
    }
  }
}

// Batched sequences (the server's continuous batching) and prefix reuse (truncate, then the
// rest) give, with every cache type, the logits one sequence gets alone with that type.
TEST(KvCacheType, BatchesAndPrefixReuseWorkWithEveryType) {
  const std::string path = test::fixtures_dir() + "/models/llama_gqa";
  std::vector<int32_t> a, b;
  for (int32_t i = 0; i < 19; ++i) a.push_back((i * 31 + 7) % 200 + 3);
  for (int32_t i = 0; i < 6; ++i) b.push_back((i * 17 + 5) % 200 + 3);
  struct Types {
    DType k, v;
  };
  for (Types t : {Types{DType::F32, DType::F32}, Types{DType::F16, DType::F16},
                  Types{DType::Q8_0, DType::Q8_0}, Types{DType::Q8_0, DType::F32}}) {
    const std::string what = std::string(name(t.k)) + "/" + std::string(name(t.v));
    models::LoadOptions options;
    options.num_threads = 2;
    options.kv_type_k = t.k;
    options.kv_type_v = t.v;
    auto model = models::load(path, options);
    EXPECT_EQ(model->info().kv_type_k, t.k);
    EXPECT_EQ(model->info().kv_type_v, t.v);
    const int64_t vocab = model->config().vocab_size;
    const std::vector<float> alone_a = model->forward(a, true);
    model->reset_state();
    const std::vector<float> alone_b = model->forward(b, false);
    // Prefix reuse: keep 11 positions, run the rest.
    model->reset_state();
    model->forward(a, false);
    model->truncate(11);
    const std::vector<float> tail = model->forward(std::span(a).subspan(11), true);
    const test::LogitDiff reuse = test::compare_logits(
        tail, std::vector<float>(alone_a.begin() + 11 * vocab, alone_a.end()), vocab);
    EXPECT_LT(reuse.max_abs, 1e-3) << what;
    // Two sequences in one batch.
    auto sa = model->new_sequence(), sb = model->new_sequence();
    const std::vector<models::BatchItem> batch = {{sa.get(), a, false}, {sb.get(), b, false}};
    const std::vector<float> out = model->forward_batch(batch);
    ASSERT_EQ(out.size(), static_cast<size_t>(2 * vocab)) << what;
    const test::LogitDiff da =
        test::compare_logits(std::vector<float>(out.begin(), out.begin() + vocab),
                             std::vector<float>(alone_a.end() - vocab, alone_a.end()), vocab);
    const test::LogitDiff db =
        test::compare_logits(std::vector<float>(out.begin() + vocab, out.end()), alone_b, vocab);
    EXPECT_LT(da.max_abs, 1e-3) << what;
    EXPECT_LT(db.max_abs, 1e-3) << what;
  }
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
  options.kv_type = DType::F32;
  options.kv_type_v = DType::Q4_0;  // a weight type, not a cache type
  try {
    models::load((dir / "q8_0.gguf").string(), options);
    FAIL() << "expected af::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("q4_0"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace af
