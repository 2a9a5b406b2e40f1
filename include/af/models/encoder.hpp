#pragma once
// Models whose last hidden states are pooled into sentence embeddings: BERT-family encoders
// (BertModel, e.g. sentence-transformers' all-MiniLM-L6-v2) and the decoder LMs (their final-norm
// rows, what lm_head reads). af::Embedder (af/runtime/embedder.hpp) adds tokenization, pooling
// and normalisation on top.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "af/models/causal_lm.hpp"

namespace af::models {

enum class Pooling {
  kMean,  // mean of every token's row (sentence-transformers' pooling_mode_mean_tokens)
  kCls,   // the first token's row ([CLS])
  kLast,  // the last token's row (decoder embedding models, pooling_mode_lasttoken)
};
const char* pooling_name(Pooling pooling);  // "mean", "cls", "last"
std::optional<Pooling> pooling_from_name(std::string_view name);

// What the model folder says about its sentence embeddings (sentence-transformers' modules.json,
// 1_Pooling/config.json, sentence_bert_config.json), or the defaults where it says nothing.
struct EmbeddingDefaults {
  Pooling pooling = Pooling::kMean;  // encoders: mean; decoders: last
  bool normalize = false;            // a sentence_transformers.models.Normalize module
  int64_t max_tokens = 0;            // max_seq_length, capped by the model's positions
};

class EncoderModel {
 public:
  virtual ~EncoderModel() = default;
  // Runs each sequence on its own (encoders attend both ways within it, decoders causally) in one
  // batched pass and returns every token's last hidden state: [sum of sizes, hidden_size()],
  // the sequences' rows one after another. Throws before any work (kInvalidArgument for an empty
  // sequence or an id outside the vocabulary, kOutOfRange for one longer than max_tokens(); the
  // message names the sequence's index).
  virtual std::vector<float> hidden_states(std::span<const std::span<const int32_t>> sequences) = 0;
  virtual int64_t hidden_size() const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual const ModelInfo& info() const = 0;
  virtual const EmbeddingDefaults& defaults() const = 0;
  int64_t max_tokens() const { return defaults().max_tokens; }
};

// Opens an HF folder (or GGUF for decoders) as an encoder: BertModel folders directly, decoder
// architectures of af::models::load through their hidden states. Throws af::Error naming the
// path or field at fault.
std::unique_ptr<EncoderModel> load_encoder(const std::string& path,
                                           const LoadOptions& options = {});

// Whether `path` holds an encoder-only architecture (BertModel): one that load_encoder serves
// and af::models::load refuses. Reads only the config.
bool is_encoder_model(const std::string& path);

// The sentence-transformers files beside a model (modules.json and the modules it lists), read
// over `defaults`; `path` is the model folder or a file in it. Errors name the file and field.
EmbeddingDefaults read_embedding_defaults(const std::string& path, EmbeddingDefaults defaults);

}  // namespace af::models
