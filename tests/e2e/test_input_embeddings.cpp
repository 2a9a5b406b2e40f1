// Input embeddings (InputEmbeddings in BatchItem / CausalLM::forward_embeds): rows that replace
// the token lookup at masked positions. Feeding the table rows of other ids must give exactly
// the logits of those ids, in one sequence, across prefill chunks and in a batch.
#include <cstring>
#include <random>

#include "af/core/error.hpp"
#include "af/io/model_files.hpp"
#include "af/models/causal_lm.hpp"
#include "af/models/model_files.hpp"
#include "test_util.hpp"

namespace af {
namespace {

const std::string kModel = "/models/llama_gqa";

std::unique_ptr<models::CausalLM> load_model(int64_t context = 0) {
  models::LoadOptions options;
  options.num_threads = 2;
  options.context_length = context;
  return models::load(test::fixtures_dir() + kModel, options);
}

// The float32 embedding rows of `ids` read straight from the fixture's safetensors.
std::vector<float> table_rows(const std::vector<int32_t>& ids) {
  const io::ModelFiles files = models::open_model_files(test::fixtures_dir() + kModel);
  const Tensor table = files.weights->get("model.embed_tokens.weight");
  EXPECT_EQ(table.dtype(), DType::F32);
  const int64_t dim = table.shape()[1];
  const auto* data = reinterpret_cast<const float*>(table.data());
  std::vector<float> rows;
  for (int32_t id : ids) rows.insert(rows.end(), data + id * dim, data + (id + 1) * dim);
  return rows;
}

std::vector<int32_t> random_ids(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> dist(3, 511);
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = dist(rng);
  return ids;
}

// `ids` with the masked positions set to placeholder 0, the mask, and the rows of the
// original ids at those positions (what a multimodal prompt looks like to the decoder).
struct Masked {
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;
  std::vector<float> rows;
  models::InputEmbeddings view() const { return {mask, rows}; }
};

Masked mask_positions(const std::vector<int32_t>& ids, size_t begin, size_t end) {
  Masked m{ids, std::vector<uint8_t>(ids.size(), 0), {}};
  std::vector<int32_t> replaced;
  for (size_t t = begin; t < end; ++t) {
    m.mask[t] = 1;
    replaced.push_back(ids[t]);
    m.ids[t] = 0;
  }
  m.rows = table_rows(replaced);
  return m;
}

TEST(InputEmbeddings, TableRowsGiveTheLogitsOfTheirIds) {
  auto model = load_model();
  const std::vector<int32_t> ids = random_ids(19, 1);
  const std::vector<float> want = model->forward(ids, true);
  model->reset_state();
  const Masked m = mask_positions(ids, 4, 13);
  const std::vector<float> got = model->forward_embeds(m.ids, true, m.view());
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)));
  // The placeholder ids alone give other logits: the rows were used.
  model->reset_state();
  const std::vector<float> plain = model->forward(m.ids, true);
  EXPECT_NE(0, std::memcmp(plain.data(), want.data(), plain.size() * sizeof(float)));
}

TEST(InputEmbeddings, MaskedRunSpanningPrefillChunks) {
  auto model = load_model(/*context=*/1400);
  const std::vector<int32_t> ids = random_ids(1100, 2);
  const std::vector<float> want = model->forward(ids, false);
  model->reset_state();
  // Positions 500..530 straddle the 512-token chunk border; 1020..1030 lie in the third chunk.
  Masked m = mask_positions(ids, 500, 530);
  const Masked late = mask_positions(ids, 1020, 1030);
  for (size_t t = 1020; t < 1030; ++t) {
    m.mask[t] = 1;
    m.ids[t] = 0;
  }
  m.rows.insert(m.rows.end(), late.rows.begin(), late.rows.end());
  const std::vector<float> got = model->forward_embeds(m.ids, false, m.view());
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)));
}

TEST(InputEmbeddings, BatchItemsWithAndWithoutEmbeddings) {
  auto model = load_model();
  const int64_t vocab = model->config().vocab_size;
  const std::vector<int32_t> a = random_ids(11, 3), b = random_ids(7, 4);
  const std::vector<float> want_a = model->forward(a, true);
  model->reset_state();
  const std::vector<float> want_b = model->forward(b, false);
  auto sa = model->new_sequence();
  auto sb = model->new_sequence();
  const Masked m = mask_positions(a, 0, 5);
  const std::vector<models::BatchItem> batch = {{sb.get(), b, false, {}},
                                                {sa.get(), m.ids, true, m.view()}};
  const std::vector<float> out = model->forward_batch(batch);
  ASSERT_EQ(out.size(), static_cast<size_t>(12 * vocab));
  EXPECT_EQ(0, std::memcmp(out.data(), want_b.data(), vocab * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(out.data() + vocab, want_a.data(), 11 * vocab * sizeof(float)));
}

TEST(InputEmbeddings, MismatchedRowsOrMaskThrowBeforeAnyChange) {
  auto model = load_model();
  Masked m = mask_positions(random_ids(9, 5), 2, 6);
  m.rows.resize(m.rows.size() - 64);  // one row short
  EXPECT_THROW(model->forward_embeds(m.ids, false, m.view()), Error);
  m = mask_positions(random_ids(9, 5), 2, 6);
  m.mask.pop_back();  // mask shorter than the ids
  EXPECT_THROW(model->forward_embeds(m.ids, false, m.view()), Error);
  EXPECT_EQ(model->n_past(), 0);
}

}  // namespace
}  // namespace af
