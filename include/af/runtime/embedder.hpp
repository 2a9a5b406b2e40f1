#pragma once
// Sentence embeddings: text -> tokens -> an encoder's last hidden states -> pooled (mean, [CLS]
// or last token) -> optionally L2-normalised, as sentence-transformers computes them. Works for
// BertModel folders and for the decoder LMs (af/models/encoder.hpp).
//
//   auto e = af::Embedder::load("/models/all-MiniLM-L6-v2");
//   std::vector<std::vector<float>> v = e->embed({"first sentence", "second"});
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "af/models/encoder.hpp"
#include "af/tokenizer/tokenizer.hpp"

namespace af {

struct EmbedOptions {
  // Unset: as the model folder's sentence-transformers modules say (EmbeddingDefaults).
  std::optional<models::Pooling> pooling;
  std::optional<bool> normalize;
  // Tokens per forward pass: sequences are packed (no padding) into passes of at most this many
  // tokens (a longer sequence goes alone), which bounds activation memory.
  int64_t max_batch_tokens = 8192;
  // Inputs per forward pass (sentence-transformers' batch_size).
  int64_t max_batch_inputs = 64;
};

class Embedder {
 public:
  // Loads the model (models::load_encoder) and its tokenizer from `path`.
  static std::unique_ptr<Embedder> load(const std::string& path,
                                        const models::LoadOptions& load_options = {},
                                        const EmbedOptions& options = {});
  Embedder(std::unique_ptr<models::EncoderModel> model,
           std::shared_ptr<const tok::Tokenizer> tokenizer, const EmbedOptions& options);

  // The ids the model embeds for `text` (with the tokenizer's special tokens, as HF adds them).
  std::vector<int32_t> tokenize(std::string_view text) const;
  // One vector of dim() floats per input, in order. Throws af::Error before any work for an
  // empty input, an id outside the vocabulary, or an input longer than max_tokens() (kOutOfRange),
  // naming the input's index.
  std::vector<std::vector<float>> embed_ids(std::span<const std::vector<int32_t>> inputs);
  std::vector<std::vector<float>> embed(std::span<const std::string> texts);
  std::vector<std::vector<float>> embed(std::initializer_list<std::string> texts) {
    const std::vector<std::string> v(texts);
    return embed(v);
  }

  int64_t dim() const { return model_->hidden_size(); }
  int64_t max_tokens() const { return model_->max_tokens(); }
  models::Pooling pooling() const { return pooling_; }
  bool normalize() const { return normalize_; }
  const tok::Tokenizer& tokenizer() const { return *tokenizer_; }
  const models::EncoderModel& model() const { return *model_; }

 private:
  // rows[n, dim] of one input -> its pooled (and normalised) vector.
  std::vector<float> pool(const float* rows, int64_t n) const;

  std::unique_ptr<models::EncoderModel> model_;
  std::shared_ptr<const tok::Tokenizer> tokenizer_;
  models::Pooling pooling_;
  bool normalize_;
  int64_t max_batch_tokens_;
  int64_t max_batch_inputs_;
};

// v scaled to unit L2 norm (as torch's F.normalize: divided by max(norm, 1e-12)).
void l2_normalize(std::span<float> v);
// Matryoshka truncation: the first `dims` components of v (1 <= dims <= v.size(), else
// kInvalidArgument), renormalised to unit length.
void truncate_embedding(std::vector<float>& v, int64_t dims);

}  // namespace af
