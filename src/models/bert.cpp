// BertModel (BERT, MiniLM, sentence-transformers folders) as transformers' modeling_bert:
//   x = LayerNorm(word_embeddings[id] + position_embeddings[pos] + token_type_embeddings[0])
//   per layer (post-norm):
//     x = LayerNorm(x + attention.output.dense(attention(query(x), key(x), value(x))))
//     x = LayerNorm(x + output.dense(gelu(intermediate.dense(x))))
// Attention is bidirectional within each sequence. A batch is packed without padding: the
// sequences' rows follow one another and a block-diagonal mask keeps each to its own keys, which
// is what HF's padding mask computes for the real tokens, with no work spent on pad rows.
#include <algorithm>
#include <cmath>
#include <memory>

#include "af/core/error.hpp"
#include "af/io/hf_config.hpp"
#include "af/io/model_files.hpp"
#include "af/models/encoder.hpp"
#include "af/nn/layers.hpp"
#include "af/nn/var_builder.hpp"
#include "models/registry.hpp"

namespace af::models {
namespace {

constexpr const char* kComponent = "bert";
// Tokens per forward pass: bounds the activation scratch (about kChunkTokens * (5 * hidden +
// intermediate) floats) whatever the batch; a sequence never spans two passes.
constexpr int64_t kChunkTokens = 4096;

struct BertSpec {
  int64_t vocab = 0, hidden = 0, intermediate = 0, layers = 0, heads = 0, max_positions = 0;
  int64_t type_vocab = 0;
  double eps = 1e-12;
  GeluKind act = GeluKind::kErf;

  static BertSpec from_config(const io::HfConfig& c);
};

int64_t positive(const io::HfConfig& c, const std::string& key, int64_t fallback) {
  const int64_t v = c.get_int(key, fallback);
  AF_CHECK(v > 0 && v <= (int64_t{1} << 31) - 1, ErrorCode::kFormat, kComponent, c.origin(),
           ": field \"", key, "\" must be a positive integer below 2^31, got ", v);
  return v;
}

BertSpec BertSpec::from_config(const io::HfConfig& c) {
  BertSpec s;
  s.vocab = positive(c, "vocab_size", 30522);
  s.hidden = positive(c, "hidden_size", 768);
  s.intermediate = positive(c, "intermediate_size", 3072);
  s.layers = positive(c, "num_hidden_layers", 12);
  s.heads = positive(c, "num_attention_heads", 12);
  s.max_positions = positive(c, "max_position_embeddings", 512);
  s.type_vocab = positive(c, "type_vocab_size", 2);
  s.eps = c.get_float("layer_norm_eps", 1e-12);
  AF_CHECK(s.hidden % s.heads == 0, ErrorCode::kFormat, kComponent, c.origin(), ": hidden_size ",
           s.hidden, " is not a multiple of num_attention_heads ", s.heads);
  const std::string act = c.get_string("hidden_act", "gelu");
  if (act == "gelu_new" || act == "gelu_pytorch_tanh") {
    s.act = GeluKind::kTanh;
  } else {
    AF_CHECK(act == "gelu", ErrorCode::kUnsupported, kComponent, c.origin(), ": hidden_act \"", act,
             "\" is not supported (gelu, gelu_new, gelu_pytorch_tanh are)");
  }
  const std::string positions = c.get_string("position_embedding_type", "absolute");
  AF_CHECK(positions == "absolute", ErrorCode::kUnsupported, kComponent, c.origin(),
           ": position_embedding_type \"", positions, "\" is not supported (absolute is)");
  return s;
}

struct LayerNormWeights {
  std::vector<float> w, b;  // [hidden]
  static LayerNormWeights load(const nn::VarBuilder& vb, int64_t dim) {
    return {vb.f32("weight", {dim}), vb.f32("bias", {dim})};
  }
};

struct BertLayer {
  nn::Linear q, k, v, attn_out;  // [hidden, hidden]
  LayerNormWeights attn_norm;    // attention.output.LayerNorm
  nn::Linear fc1;                // intermediate.dense [intermediate, hidden]
  nn::Linear fc2;                // output.dense [hidden, intermediate]
  LayerNormWeights out_norm;     // output.LayerNorm
};

BertLayer load_layer(const nn::VarBuilder& vb, const BertSpec& s) {
  const nn::VarBuilder self = vb.sub("attention").sub("self");
  const nn::VarBuilder attn_output = vb.sub("attention").sub("output");
  BertLayer l;
  l.q = nn::Linear::load(self.sub("query"), s.hidden, s.hidden, true);
  l.k = nn::Linear::load(self.sub("key"), s.hidden, s.hidden, true);
  l.v = nn::Linear::load(self.sub("value"), s.hidden, s.hidden, true);
  l.attn_out = nn::Linear::load(attn_output.sub("dense"), s.hidden, s.hidden, true);
  l.attn_norm = LayerNormWeights::load(attn_output.sub("LayerNorm"), s.hidden);
  l.fc1 = nn::Linear::load(vb.sub("intermediate").sub("dense"), s.hidden, s.intermediate, true);
  l.fc2 = nn::Linear::load(vb.sub("output").sub("dense"), s.intermediate, s.hidden, true);
  l.out_norm = LayerNormWeights::load(vb.sub("output").sub("LayerNorm"), s.hidden);
  return l;
}

class Bert final : public EncoderModel {
 public:
  Bert(std::shared_ptr<const io::ModelFiles> files, const nn::VarBuilder& vb, BertSpec spec,
       std::shared_ptr<Backend> backend, ModelInfo info, EmbeddingDefaults defaults)
      : files_(std::move(files)),
        s_(spec),
        be_(std::move(backend)),
        info_(std::move(info)),
        defaults_(defaults) {
    const nn::VarBuilder emb = vb.sub("embeddings");
    word_ = nn::Embedding::load(emb.sub("word_embeddings"), s_.vocab, s_.hidden);
    positions_ = emb.sub("position_embeddings").f32("weight", {s_.max_positions, s_.hidden});
    token_type0_ = emb.sub("token_type_embeddings").f32("weight", {s_.type_vocab, s_.hidden});
    token_type0_.resize(static_cast<size_t>(s_.hidden));  // single sentences: type 0 only
    emb_norm_ = LayerNormWeights::load(emb.sub("LayerNorm"), s_.hidden);
    for (int64_t i = 0; i < s_.layers; ++i) {
      layers_.push_back(load_layer(vb.sub("encoder").sub("layer").sub(i), s_));
    }
  }

  void prepare() {
    for (BertLayer& l : layers_) {
      for (nn::Linear* lin : {&l.q, &l.k, &l.v, &l.attn_out, &l.fc1, &l.fc2}) lin->prepare(*be_);
    }
  }

  int64_t hidden_size() const override { return s_.hidden; }
  int64_t vocab_size() const override { return s_.vocab; }
  const ModelInfo& info() const override { return info_; }
  const EmbeddingDefaults& defaults() const override { return defaults_; }

  std::vector<float> hidden_states(std::span<const std::span<const int32_t>> seqs) override {
    int64_t total = 0;
    for (size_t i = 0; i < seqs.size(); ++i) {
      check_sequence(seqs[i], i);
      total += static_cast<int64_t>(seqs[i].size());
    }
    std::vector<float> out(static_cast<size_t>(total * s_.hidden));
    // Whole sequences per pass, at most kChunkTokens rows (or one sequence when longer).
    size_t first = 0;
    int64_t row = 0;
    while (first < seqs.size()) {
      size_t last = first;
      int64_t rows = 0;
      while (last < seqs.size() &&
             (last == first || rows + static_cast<int64_t>(seqs[last].size()) <= kChunkTokens)) {
        rows += static_cast<int64_t>(seqs[last++].size());
      }
      run_chunk(seqs.subspan(first, last - first), rows, out.data() + row * s_.hidden);
      row += rows;
      first = last;
    }
    return out;
  }

 private:
  void check_sequence(std::span<const int32_t> ids, size_t index) const {
    AF_CHECK(!ids.empty(), ErrorCode::kInvalidArgument, kComponent, "input ", index,
             " has no tokens");
    AF_CHECK(static_cast<int64_t>(ids.size()) <= max_tokens(), ErrorCode::kOutOfRange, kComponent,
             "input ", index, " has ", ids.size(), " tokens, more than the model's maximum of ",
             max_tokens());
    for (int32_t id : ids) {
      AF_CHECK(id >= 0 && id < s_.vocab, ErrorCode::kInvalidArgument, kComponent, "input ", index,
               ": token id ", id, " is outside the vocabulary of ", s_.vocab);
    }
  }

  // x[rows, hidden] = LayerNorm(word + position + token type 0) of the packed sequences.
  void embed(std::span<const std::span<const int32_t>> seqs, int64_t rows, float* x) {
    ids_.clear();
    for (const auto& seq : seqs) ids_.insert(ids_.end(), seq.begin(), seq.end());
    word_.forward(*be_, ids_.data(), rows, x);
    const auto h = static_cast<size_t>(s_.hidden);
    float* r = x;
    for (const auto& seq : seqs) {
      for (size_t t = 0; t < seq.size(); ++t, r += h) {
        const float* pos = positions_.data() + t * h;
        for (size_t j = 0; j < h; ++j) r[j] += pos[j] + token_type0_[j];
      }
    }
    be_->layer_norm(x, emb_norm_.w.data(), emb_norm_.b.data(), rows, s_.hidden,
                    static_cast<float>(s_.eps), x);
  }

  void run_chunk(std::span<const std::span<const int32_t>> seqs, int64_t rows, float* x) {
    bounds_.assign(1, 0);
    for (const auto& seq : seqs) bounds_.push_back(bounds_.back() + std::ssize(seq));
    AttentionMask mask;
    if (seqs.size() > 1) {
      mask = {AttentionMaskKind::kBlocks, 0, bounds_.data(), static_cast<int64_t>(seqs.size())};
    }
    embed(seqs, rows, x);
    for (const BertLayer& l : layers_) run_layer(l, x, rows, mask);
  }

  void run_layer(const BertLayer& l, float* x, int64_t rows, const AttentionMask& mask) {
    const int64_t h = s_.hidden, head_dim = h / s_.heads;
    const auto eps = static_cast<float>(s_.eps);
    scratch_.resize(static_cast<size_t>(rows * (4 * h + s_.intermediate)));
    float* q = scratch_.data();  // [rows, hidden] each
    float* k = q + rows * h;
    float* v = k + rows * h;
    float* attn = v + rows * h;    // [rows, hidden]
    float* ffn = attn + rows * h;  // [rows, intermediate]
    const Backend::MatmulTarget qkv[] = {l.q.target(q), l.k.target(k), l.v.target(v)};
    be_->matmul_group(x, rows, qkv, 3);
    be_->attention_rows(q, h, k, h, v, h, rows, rows, s_.heads, s_.heads, head_dim,
                        1.0f / std::sqrt(static_cast<float>(head_dim)), mask, attn);
    l.attn_out.forward(*be_, attn, rows, q);  // q is free again: [rows, hidden]
    be_->add_scaled(x, q, 1.0f, rows * h);
    be_->layer_norm(x, l.attn_norm.w.data(), l.attn_norm.b.data(), rows, h, eps, x);
    l.fc1.forward(*be_, x, rows, ffn);
    be_->gelu(ffn, rows * s_.intermediate, s_.act);
    l.fc2.forward(*be_, ffn, rows, q);
    be_->add_scaled(x, q, 1.0f, rows * h);
    be_->layer_norm(x, l.out_norm.w.data(), l.out_norm.b.data(), rows, h, eps, x);
  }

  std::shared_ptr<const io::ModelFiles> files_;  // the weights are views into it
  BertSpec s_;
  std::shared_ptr<Backend> be_;
  ModelInfo info_;
  EmbeddingDefaults defaults_;
  nn::Embedding word_;              // [vocab, hidden]
  std::vector<float> positions_;    // [max_positions, hidden]
  std::vector<float> token_type0_;  // [hidden]: token type 0's row
  LayerNormWeights emb_norm_;       // embeddings.LayerNorm
  std::vector<BertLayer> layers_;
  std::vector<float> scratch_;
  std::vector<int32_t> ids_;
  std::vector<int64_t> bounds_;
};

}  // namespace

std::unique_ptr<EncoderModel> make_bert(io::ModelFiles files, const io::HfConfig& config,
                                        const LoadOptions& options) {
  AF_CHECK(files.format == "safetensors", ErrorCode::kUnsupported, kComponent, files.path,
           ": BertModel is read from HF folders (config.json + model.safetensors) only");
  const BertSpec spec = BertSpec::from_config(config);
  auto shared = std::make_shared<const io::ModelFiles>(std::move(files));
  nn::VarBuilder vb(*shared->weights);
  // BertForMaskedLM-style checkpoints keep the encoder under "bert.".
  if (vb.has("bert.embeddings.word_embeddings.weight")) vb = vb.sub("bert");
  EmbeddingDefaults defaults;
  defaults.max_tokens = spec.max_positions;
  defaults = read_embedding_defaults(shared->path, defaults);
  defaults.max_tokens = std::min(defaults.max_tokens, spec.max_positions);
  ModelInfo info;
  info.architecture = config.architecture();
  info.format = shared->format;
  info.path = shared->path;
  info.num_heads = info.num_kv_heads = spec.heads;
  info.head_dim = spec.hidden / spec.heads;
  info.intermediate_size = spec.intermediate;
  info.context_length = defaults.max_tokens;
  std::shared_ptr<Backend> backend = options.backend;
  if (!backend) backend = make_backend({options.device, options.num_threads, options.isa});
  auto model =
      std::make_unique<Bert>(shared, vb, spec, std::move(backend), std::move(info), defaults);
  if (options.repack_weights) model->prepare();
  return model;
}

}  // namespace af::models
