// BertModel and af::Embedder against transformers (hidden states) and sentence-transformers
// (pooled, normalised vectors): the tiny random fixture (tools/make_embedding_fixtures.py) and,
// when AF_MODELS is set, the real all-MiniLM-L6-v2.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "af/core/error.hpp"
#include "af/models/encoder.hpp"
#include "af/runtime/embedder.hpp"
#include "test_util.hpp"

namespace {

using af::test::fixtures_dir;
using af::test::read_text;

std::string tiny_dir() { return fixtures_dir() + "/models/bert_tiny"; }

nlohmann::json tiny_reference() {
  return nlohmann::json::parse(read_text(tiny_dir() + "/reference.json"));
}

double cosine_distance(const std::vector<float>& a, const std::vector<float>& b) {
  double dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    dot += static_cast<double>(a[i]) * b[i];
    na += static_cast<double>(a[i]) * a[i];
    nb += static_cast<double>(b[i]) * b[i];
  }
  return 1.0 - dot / std::sqrt(na * nb);
}

af::models::LoadOptions two_threads() {
  af::models::LoadOptions o;
  o.num_threads = 2;
  return o;
}

TEST(BertTiny, TokenizesAsTransformers) {
  const nlohmann::json ref = tiny_reference();
  auto e = af::Embedder::load(tiny_dir(), two_threads());
  for (size_t i = 0; i < ref["sentences"].size(); ++i) {
    EXPECT_EQ(e->tokenize(ref["sentences"][i].get<std::string>()),
              ref["ids"][i].get<std::vector<int32_t>>())
        << "sentence " << i;
  }
}

// Every sentence's hidden states equal transformers' from one padded batch, whether we run the
// sentences one by one or packed into one pass (the block mask stands in for the padding mask).
TEST(BertTiny, HiddenStatesMatchTransformersAloneAndBatched) {
  const nlohmann::json ref = tiny_reference();
  auto model = af::models::load_encoder(tiny_dir(), two_threads());
  EXPECT_EQ(model->info().architecture, "BertModel");
  const int64_t h = model->hidden_size();
  ASSERT_EQ(h, 32);
  std::vector<std::vector<int32_t>> ids;
  for (const auto& s : ref["ids"]) ids.push_back(s.get<std::vector<int32_t>>());
  std::vector<std::span<const int32_t>> all(ids.begin(), ids.end());
  const std::vector<float> batched = model->hidden_states(all);
  size_t row = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::span<const int32_t> one[] = {ids[i]};
    const std::vector<float> alone = model->hidden_states(one);
    const auto& expected = ref["hidden"][i];
    ASSERT_EQ(alone.size(), expected.size() * static_cast<size_t>(h));
    for (size_t t = 0; t < expected.size(); ++t, ++row) {
      for (int64_t j = 0; j < h; ++j) {
        const float want = expected[t][static_cast<size_t>(j)].get<float>();
        EXPECT_NEAR(alone[t * h + j], want, 2e-5) << "sentence " << i << " token " << t;
        EXPECT_NEAR(batched[row * h + j], want, 2e-5) << "sentence " << i << " token " << t;
      }
    }
  }
  EXPECT_EQ(row * static_cast<size_t>(h), batched.size());
}

TEST(BertTiny, EmbeddingsMatchSentenceTransformers) {
  const nlohmann::json ref = tiny_reference();
  auto e = af::Embedder::load(tiny_dir(), two_threads());
  // The folder's modules.json: Transformer, Pooling (mean), Normalize.
  EXPECT_EQ(e->pooling(), af::models::Pooling::kMean);
  EXPECT_TRUE(e->normalize());
  EXPECT_EQ(e->max_tokens(), 128);
  const auto sentences = ref["sentences"].get<std::vector<std::string>>();
  const auto vectors = e->embed(sentences);
  ASSERT_EQ(vectors.size(), sentences.size());
  for (size_t i = 0; i < vectors.size(); ++i) {
    const auto want = ref["embeddings"][i].get<std::vector<float>>();
    ASSERT_EQ(vectors[i].size(), want.size());
    EXPECT_LT(cosine_distance(vectors[i], want), 1e-6) << "sentence " << i;
    for (size_t j = 0; j < want.size(); ++j) EXPECT_NEAR(vectors[i][j], want[j], 1e-5);
  }
}

// cls / last pooling pick the first / last hidden row; without normalize the norm stays.
TEST(BertTiny, PoolingOverridesPickRows) {
  const nlohmann::json ref = tiny_reference();
  const auto ids = ref["ids"][1].get<std::vector<int32_t>>();
  const auto& hidden = ref["hidden"][1];
  for (const auto pooling : {af::models::Pooling::kCls, af::models::Pooling::kLast}) {
    af::EmbedOptions o;
    o.pooling = pooling;
    o.normalize = false;
    auto e = af::Embedder::load(tiny_dir(), two_threads(), o);
    const std::vector<std::vector<int32_t>> one{ids};
    const auto v = e->embed_ids(one)[0];
    const size_t row = pooling == af::models::Pooling::kCls ? 0 : hidden.size() - 1;
    for (size_t j = 0; j < v.size(); ++j) EXPECT_NEAR(v[j], hidden[row][j].get<float>(), 2e-5);
  }
}

TEST(BertTiny, BadInputsNameTheirIndex) {
  auto e = af::Embedder::load(tiny_dir(), two_threads());
  const std::vector<std::vector<int32_t>> too_long{{2, 3}, std::vector<int32_t>(129, 5)};
  try {
    e->embed_ids(too_long);
    FAIL() << "expected an error";
  } catch (const af::Error& err) {
    EXPECT_EQ(err.code(), af::ErrorCode::kOutOfRange);
    EXPECT_NE(std::string(err.what()).find("input 1 has 129 tokens"), std::string::npos)
        << err.what();
  }
  const std::vector<std::vector<int32_t>> empty{{2, 3}, {}};
  EXPECT_THROW(e->embed_ids(empty), af::Error);
  const std::vector<std::vector<int32_t>> bad_id{{2, 99999, 3}};
  try {
    e->embed_ids(bad_id);
    FAIL() << "expected an error";
  } catch (const af::Error& err) {
    EXPECT_NE(std::string(err.what()).find("input 0: token id 99999"), std::string::npos)
        << err.what();
  }
}

// The real all-MiniLM-L6-v2 (scripts/fetch_models.sh) against vectors sentence-transformers
// 6.0.1 computed for ten sentences (tests/fixtures/embeddings/all_minilm_l6_v2.json).
TEST(BertMiniLM, EqualsSentenceTransformers) {
  const char* models = std::getenv("AF_MODELS");
  const std::string folder = std::string(models ? models : "") + "/all-minilm-l6-v2";
  if (!models || !std::filesystem::exists(folder + "/model.safetensors")) {
    GTEST_SKIP() << "AF_MODELS/all-minilm-l6-v2 not found (run scripts/fetch_models.sh and "
                    "export AF_MODELS)";
  }
  const nlohmann::json ref =
      nlohmann::json::parse(read_text(fixtures_dir() + "/embeddings/all_minilm_l6_v2.json"));
  auto e = af::Embedder::load(folder, two_threads());
  EXPECT_EQ(e->dim(), 384);
  EXPECT_EQ(e->max_tokens(), 256);
  const auto sentences = ref["sentences"].get<std::vector<std::string>>();
  for (size_t i = 0; i < sentences.size(); ++i) {
    EXPECT_EQ(e->tokenize(sentences[i]), ref["ids"][i].get<std::vector<int32_t>>()) << i;
  }
  const auto vectors = e->embed(sentences);
  for (size_t i = 0; i < vectors.size(); ++i) {
    EXPECT_LT(cosine_distance(vectors[i], ref["embeddings"][i].get<std::vector<float>>()), 1e-5)
        << "sentence " << i << ": " << sentences[i];
  }
}

TEST(BertTiny, CausalLoadPointsToEncoderApi) {
  try {
    af::models::load(tiny_dir());
    FAIL() << "expected an error";
  } catch (const af::Error& err) {
    EXPECT_NE(std::string(err.what()).find("load_encoder"), std::string::npos) << err.what();
  }
}

}  // namespace

namespace {

// A decoder LM's embeddings read its final-norm hidden states (transformers' last_hidden_state,
// tests/fixtures/embeddings/qwen2_hidden.json), both sequences in one batch; pooling picks the
// last row (the decoder default) or averages them.
TEST(DecoderEmbeddings, HiddenStatesMatchTransformersAndPool) {
  const nlohmann::json ref = nlohmann::json::parse(
      af::test::read_text(af::test::fixtures_dir() + "/embeddings/qwen2_hidden.json"));
  const std::string folder = af::test::fixtures_dir() + "/models/qwen2";
  auto model = af::models::load_encoder(folder, two_threads());
  EXPECT_EQ(model->defaults().pooling, af::models::Pooling::kLast);
  EXPECT_FALSE(model->defaults().normalize);
  const int64_t h = model->hidden_size();
  std::vector<std::vector<int32_t>> ids;
  for (const auto& s : ref["ids"]) ids.push_back(s.get<std::vector<int32_t>>());
  const std::vector<std::span<const int32_t>> seqs(ids.begin(), ids.end());
  const std::vector<float> rows = model->hidden_states(seqs);
  size_t row = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    for (size_t t = 0; t < ids[i].size(); ++t, ++row) {
      for (int64_t j = 0; j < h; ++j) {
        EXPECT_NEAR(rows[row * h + j], ref["hidden"][i][t][j].get<float>(), 1e-4)
            << "sequence " << i << " token " << t;
      }
    }
  }
  // Ids only: any tokenizer will do (stories260K's, the fixture's vocabulary size).
  const std::shared_ptr<const af::tok::Tokenizer> tokenizer =
      af::tok::Tokenizer::load(af::test::testdata_dir() + "/models/stories260K/stories260K.gguf");
  for (const auto pooling : {af::models::Pooling::kLast, af::models::Pooling::kMean}) {
    af::EmbedOptions o;
    o.pooling = pooling;
    af::Embedder e(af::models::load_encoder(folder, two_threads()), tokenizer, o);
    const auto v = e.embed_ids(ids)[0];
    const auto& hidden = ref["hidden"][0];
    for (int64_t j = 0; j < h; ++j) {
      double want = hidden[hidden.size() - 1][j].get<double>();
      if (pooling == af::models::Pooling::kMean) {
        want = 0;
        for (const auto& r : hidden) want += r[j].get<double>() / hidden.size();
      }
      EXPECT_NEAR(v[j], want, 1e-4) << af::models::pooling_name(pooling) << " " << j;
    }
  }
}

}  // namespace
