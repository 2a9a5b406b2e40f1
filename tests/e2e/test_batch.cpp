// Batched forward: several sequences through one pass over the weights give the logits each
// sequence gets alone, including items that span several prefill chunks.
#include <algorithm>
#include <cmath>
#include <random>

#include "af/core/error.hpp"
#include "af/models/causal_lm.hpp"
#include "test_util.hpp"

namespace af {
namespace {

std::vector<int32_t> random_ids(size_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = dist(rng);
  return ids;
}

double max_abs_diff(const float* a, const float* b, int64_t n) {
  double d = 0;
  for (int64_t i = 0; i < n; ++i) d = std::max<double>(d, std::fabs(a[i] - b[i]));
  return d;
}

std::unique_ptr<models::CausalLM> load_fixture(int64_t context = 0) {
  models::LoadOptions options;
  options.num_threads = 2;
  options.context_length = context;
  return models::load(test::fixtures_dir() + "/models/llama_gqa", options);
}

TEST(BatchedForward, MixedPrefillAndDecodeEqualSeparateRuns) {
  auto model = load_fixture();
  const int64_t vocab = model->config().vocab_size;
  const std::vector<std::vector<int32_t>> prompts = {
      random_ids(7, vocab, 1), random_ids(1, vocab, 2), random_ids(23, vocab, 3)};

  // Alone, through the model's own sequence.
  std::vector<std::vector<float>> alone;
  for (const auto& p : prompts) {
    model->reset_state();
    alone.push_back(model->forward(p, true));
  }

  std::vector<std::unique_ptr<models::SequenceState>> seqs;
  for (size_t i = 0; i < prompts.size(); ++i) seqs.push_back(model->new_sequence());
  // Item 0 all logits in one go; item 1 its last row; item 2 split: 20 ids now, 3 later.
  std::vector<models::BatchItem> batch = {
      {seqs[0].get(), prompts[0], true},
      {seqs[1].get(), prompts[1], false},
      {seqs[2].get(), std::span(prompts[2]).first(20), false},
  };
  std::vector<float> out = model->forward_batch(batch);
  ASSERT_EQ(out.size(), static_cast<size_t>((7 + 1 + 1) * vocab));
  EXPECT_LT(max_abs_diff(out.data(), alone[0].data(), 7 * vocab), 1e-4);
  EXPECT_LT(max_abs_diff(out.data() + 7 * vocab, alone[1].data(), vocab), 1e-4);
  EXPECT_LT(max_abs_diff(out.data() + 8 * vocab, alone[2].data() + 19 * vocab, vocab), 1e-4);
  EXPECT_EQ(seqs[2]->n_past(), 20);

  // Decode-style step: one id for sequences 0 and 2, a new 3-id run for 2.
  const std::vector<int32_t> next = {5};
  batch = {{seqs[2].get(), std::span(prompts[2]).subspan(20), true}, {seqs[0].get(), next, false}};
  out = model->forward_batch(batch);
  ASSERT_EQ(out.size(), static_cast<size_t>(4 * vocab));
  EXPECT_LT(max_abs_diff(out.data(), alone[2].data() + 20 * vocab, 3 * vocab), 1e-4);
  model->reset_state();
  std::vector<int32_t> extended = prompts[0];
  extended.push_back(5);
  const std::vector<float> ref = model->forward(extended, false);
  EXPECT_LT(max_abs_diff(out.data() + 3 * vocab, ref.data(), vocab), 1e-4);
  // The model's own sequence is independent of the batch sequences.
  EXPECT_EQ(model->n_past(), 8);
}

TEST(BatchedForward, ItemsSpanningChunksEqualOneSequence) {
  auto model = load_fixture(/*context=*/1400);
  const int64_t vocab = model->config().vocab_size;
  const std::vector<int32_t> a = random_ids(700, vocab, 4), b = random_ids(650, vocab, 5);
  model->reset_state();
  const std::vector<float> alone_a = model->forward(a, false);
  model->reset_state();
  const std::vector<float> alone_b = model->forward(b, false);
  auto sa = model->new_sequence(), sb = model->new_sequence();
  const std::vector<models::BatchItem> batch = {{sa.get(), a, false}, {sb.get(), b, false}};
  const std::vector<float> out = model->forward_batch(batch);
  ASSERT_EQ(out.size(), static_cast<size_t>(2 * vocab));
  EXPECT_LT(max_abs_diff(out.data(), alone_a.data(), vocab), 1e-4);
  EXPECT_LT(max_abs_diff(out.data() + vocab, alone_b.data(), vocab), 1e-4);
  EXPECT_EQ(sa->n_past(), 700);
  EXPECT_EQ(sb->n_past(), 650);
}

TEST(BatchedForward, BadBatchesThrowBeforeChangingState) {
  auto model = load_fixture(/*context=*/64);
  const int64_t vocab = model->config().vocab_size;
  auto s = model->new_sequence(16);
  EXPECT_EQ(s->capacity(), 16);
  const std::vector<int32_t> ok = {1, 2, 3}, bad = {1, static_cast<int32_t>(vocab)};
  const std::vector<int32_t> too_long = random_ids(17, vocab, 6);
  auto expect_throw = [&](std::vector<models::BatchItem> batch) {
    EXPECT_THROW(model->forward_batch(batch), Error);
    EXPECT_EQ(s->n_past(), 0);
  };
  expect_throw({{s.get(), ok, false}, {s.get(), ok, false}});  // same sequence twice
  expect_throw({{s.get(), bad, false}});
  expect_throw({{s.get(), too_long, false}});
  expect_throw({{s.get(), {}, false}});
  expect_throw({{nullptr, ok, false}});
  expect_throw({});
  s->truncate(0);
  EXPECT_THROW(s->truncate(-1), Error);
}

}  // namespace
}  // namespace af

namespace af {
namespace {

TEST(LoadOptionsDtype, ConvertsOrQuantizesWeightsAtLoad) {
  const std::vector<int32_t> ids = {1, 7, 42, 9, 100, 3, 77};
  models::LoadOptions options;
  options.num_threads = 2;
  const std::string path = test::fixtures_dir() + "/models/llama_gqa";
  const std::vector<float> f32 = models::load(path, options)->forward(ids, true);
  auto max_diff = [&](const std::vector<float>& other) {
    double d = 0;
    for (size_t i = 0; i < f32.size(); ++i) d = std::max<double>(d, std::fabs(f32[i] - other[i]));
    return d;
  };
  options.dtype = DType::F32;
  EXPECT_EQ(max_diff(models::load(path, options)->forward(ids, true)), 0.0);
  options.dtype = DType::BF16;
  const std::vector<float> bf16 = models::load(path, options)->forward(ids, true);
  EXPECT_GT(max_diff(bf16), 0.0);   // really converted
  EXPECT_LT(max_diff(bf16), 5e-2);  // within bfloat16 rounding
  options.dtype = DType::Q8_0;
  const std::vector<float> q8 = models::load(path, options)->forward(ids, true);
  options.dtype.reset();
  options.quantize = "q8_0";
  EXPECT_EQ(max_diff(q8), max_diff(models::load(path, options)->forward(ids, true)));
  options.dtype = DType::Q4_0;  // disagrees with quantize
  EXPECT_THROW(models::load(path, options), Error);
  options.quantize.clear();
  options.dtype = DType::I32;
  EXPECT_THROW(models::load(path, options), Error);
}

}  // namespace
}  // namespace af
