#include "models/decoder_lm.hpp"

#include <algorithm>
#include <cstring>

#include "af/backend/quant.hpp"
#include "af/core/error.hpp"

namespace af::models {
namespace {

// Prompts are processed in chunks of at most this many tokens so the activation scratch stays
// bounded (about kChunk * (4 * hidden + 2 * intermediate) floats) whatever the prompt length.
constexpr int64_t kChunk = 512;

class DecoderLM final : public CausalLM {
 public:
  DecoderLM(io::ModelFiles files, DecoderSpec spec, DecoderWeights weights, nn::Rope rope,
            std::unique_ptr<Backend> backend, int64_t context, ModelInfo info)
      : files_(std::move(files)),
        spec_(spec),
        w_(std::move(weights)),
        rope_(std::move(rope)),
        be_(std::move(backend)),
        cache_(spec.num_layers, context, spec.num_kv_heads * spec.head_dim),
        info_(std::move(info)) {}

  ModelConfig config() const override {
    return {spec_.vocab_size, spec_.max_position_embeddings, spec_.hidden_size, spec_.num_layers};
  }
  const ModelInfo& info() const override { return info_; }
  int64_t n_past() const override { return n_past_; }
  void truncate(int64_t n) override {
    AF_CHECK(n >= 0, ErrorCode::kInvalidArgument, "model", "negative truncate length ", n);
    n_past_ = std::min(n_past_, n);
  }

  std::vector<float> forward(std::span<const int32_t> ids, bool all_logits) override {
    const auto n_total = static_cast<int64_t>(ids.size());
    AF_CHECK(n_total > 0, ErrorCode::kInvalidArgument, "model", "forward needs at least one id");
    for (int32_t id : ids) {
      AF_CHECK(id >= 0 && id < spec_.vocab_size, ErrorCode::kInvalidArgument, "model", "token id ",
               id, " is outside the vocabulary of ", spec_.vocab_size);
    }
    AF_CHECK(n_past_ + n_total <= cache_.max_seq(), ErrorCode::kOutOfRange, "model",
             "context full: ", n_past_, " cached + ", n_total, " new tokens exceed the context of ",
             cache_.max_seq(), " (raise the context length)");
    const int64_t out_rows = all_logits ? n_total : 1;
    std::vector<float> logits(static_cast<size_t>(out_rows * spec_.vocab_size));
    for (int64_t begin = 0; begin < n_total; begin += kChunk) {
      const int64_t n = std::min(kChunk, n_total - begin);
      const bool last_chunk = begin + n == n_total;
      float* out = all_logits ? logits.data() + begin * spec_.vocab_size
                              : (last_chunk ? logits.data() : nullptr);
      run_chunk(ids.data() + begin, n, all_logits, out);
    }
    return logits;
  }

 private:
  // Runs n tokens; writes logits of all n rows (all_rows) or of the last row into out (if set).
  void run_chunk(const int32_t* ids, int64_t n, bool all_rows, float* out) {
    const int64_t hidden = spec_.hidden_size;
    reserve(n);
    for (int64_t t = 0; t < n; ++t)
      positions_[static_cast<size_t>(t)] = static_cast<int32_t>(n_past_ + t);

    float* x = x_.data();  // [n, hidden] residual stream
    float* h = h_.data();  // [n, hidden] normed input / sublayer output
    w_.embed_tokens.forward(*be_, ids, n, x);
    if (spec_.embed_scale != 1.0f) be_->scale(x, spec_.embed_scale, n * hidden);
    for (int64_t l = 0; l < spec_.num_layers; ++l) {
      const DecoderWeights::Layer& layer = w_.layers[static_cast<size_t>(l)];
      layer.input_layernorm.forward(*be_, x, n, h);
      layer.self_attn.forward(*be_, rope_, cache_.k(l), cache_.v(l), h, n, n_past_,
                              positions_.data(), scratch_.data(), h);
      be_->add_scaled(x, h, spec_.residual_scale, n * hidden);
      layer.post_attention_layernorm.forward(*be_, x, n, h);
      layer.mlp.forward(*be_, h, n, scratch_.data(), h);
      be_->add_scaled(x, h, spec_.residual_scale, n * hidden);
    }
    n_past_ += n;
    if (!out) return;
    const int64_t rows = all_rows ? n : 1;
    const float* last = x + (n - rows) * hidden;
    w_.norm.forward(*be_, last, rows, h);
    if (spec_.logit_divisor != 1.0f) be_->scale(h, 1.0f / spec_.logit_divisor, rows * hidden);
    w_.lm_head.forward(*be_, h, rows, out);
  }

  void reserve(int64_t n) {
    const auto need = [&](std::vector<float>& v, int64_t count) {
      if (static_cast<int64_t>(v.size()) < count) v.resize(static_cast<size_t>(count));
    };
    const int64_t q_dim = spec_.num_heads * spec_.head_dim;
    need(x_, n * spec_.hidden_size);
    need(h_, n * std::max(spec_.hidden_size, q_dim));
    need(scratch_, n * 2 * std::max(q_dim, spec_.intermediate_size));
    if (static_cast<int64_t>(positions_.size()) < n) positions_.resize(static_cast<size_t>(n));
  }

  io::ModelFiles files_;
  DecoderSpec spec_;
  DecoderWeights w_;
  nn::Rope rope_;
  std::unique_ptr<Backend> be_;
  nn::KvCache cache_;
  ModelInfo info_;
  int64_t n_past_ = 0;
  std::vector<float> x_, h_, scratch_;
  std::vector<int32_t> positions_;
};

}  // namespace

DecoderSpec DecoderSpec::from_llama_config(const io::HfConfig& c) {
  DecoderSpec s;
  s.vocab_size = c.get_int("vocab_size");
  s.hidden_size = c.get_int("hidden_size");
  s.intermediate_size = c.get_int("intermediate_size");
  s.num_layers = c.get_int("num_hidden_layers");
  s.num_heads = c.get_int("num_attention_heads");
  s.num_kv_heads = c.get_int("num_key_value_heads", s.num_heads);
  AF_CHECK(s.vocab_size > 0 && s.hidden_size > 0 && s.intermediate_size > 0 && s.num_layers > 0 &&
               s.num_heads > 0 && s.num_kv_heads > 0,
           ErrorCode::kFormat, "config", c.origin(),
           ": vocab_size, hidden_size, intermediate_size, num_hidden_layers, "
           "num_attention_heads and num_key_value_heads must be positive");
  s.head_dim = c.get_int("head_dim", s.hidden_size / s.num_heads);
  AF_CHECK(s.head_dim > 0 && (c.has("head_dim") || s.hidden_size % s.num_heads == 0),
           ErrorCode::kFormat, "config", c.origin(), ": hidden_size ", s.hidden_size,
           " is not divisible by num_attention_heads ", s.num_heads);
  s.max_position_embeddings = c.get_int("max_position_embeddings", 2048);
  s.rms_norm_eps = c.get_float("rms_norm_eps", 1e-6);
  s.qkv_bias = c.get_bool("attention_bias", false);
  s.o_bias = s.qkv_bias;
  s.mlp_bias = c.get_bool("mlp_bias", false);
  s.tie_word_embeddings = c.get_bool("tie_word_embeddings", false);
  const std::string act = c.get_string("hidden_act", "silu");
  AF_CHECK(act == "silu" || act == "swish", ErrorCode::kUnsupported, "config", c.origin(),
           ": hidden_act \"", act, "\" is not supported for this architecture (expected silu)");
  return s;
}

DecoderWeights DecoderWeights::load(const nn::VarBuilder& root, const DecoderSpec& s) {
  DecoderWeights w;
  nn::VarBuilder vb = root.sub("model");
  w.embed_tokens = nn::Embedding::load(vb.sub("embed_tokens"), s.vocab_size, s.hidden_size);
  for (int64_t i = 0; i < s.num_layers; ++i) {
    nn::VarBuilder lb = vb.sub("layers").sub(i);
    w.layers.push_back(DecoderWeights::Layer{
        nn::RmsNorm::load(lb.sub("input_layernorm"), s.hidden_size, s.rms_norm_eps),
        nn::RmsNorm::load(lb.sub("post_attention_layernorm"), s.hidden_size, s.rms_norm_eps),
        nn::SelfAttention::load(lb.sub("self_attn"), s.hidden_size, s.num_heads, s.num_kv_heads,
                                s.head_dim, s.qkv_bias, s.o_bias),
        nn::GatedMlp::load(lb.sub("mlp"), s.hidden_size, s.intermediate_size, s.mlp_bias)});
  }
  w.norm = nn::RmsNorm::load(vb.sub("norm"), s.hidden_size, s.rms_norm_eps);
  // Some tied checkpoints still carry lm_head.weight; an untied one must.
  if (!s.tie_word_embeddings || root.has("lm_head.weight")) {
    w.lm_head = nn::Linear::load(root.sub("lm_head"), s.hidden_size, s.vocab_size, false);
  } else {
    w.lm_head.weight = w.embed_tokens.table;
    w.lm_head.in = s.hidden_size;
    w.lm_head.out = s.vocab_size;
  }
  return w;
}

namespace {

std::optional<DType> load_quantization(const std::string& option) {
  if (option.empty()) return std::nullopt;
  const std::optional<DType> type = dtype_from_name(option);
  AF_CHECK(type && ((quant::is_supported(*type) && *type != DType::Q8_K) || *type == DType::BF16),
           ErrorCode::kInvalidArgument, "models", "quantize: unknown or unsupported type '", option,
           "' (expected q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k or bf16)");
  return type;
}

}  // namespace

std::unique_ptr<CausalLM> make_decoder_lm(io::ModelFiles files, const io::HfConfig& config,
                                          DecoderSpec spec, const LoadOptions& options) {
  nn::VarBuilder vb(*files.weights);
  DecoderWeights weights =
      DecoderWeights::load(vb.with_quantization(load_quantization(options.quantize)), spec);
  const int64_t context = options.context_length > 0
                              ? options.context_length
                              : std::max(spec.max_position_embeddings, options.min_context_length);
  nn::Rope rope = nn::Rope::from_config(config, spec.head_dim, files.qk_rope_layout, vb, context);
  ModelInfo info;
  info.architecture = config.architecture();
  info.format = files.format;
  info.path = files.path;
  info.num_heads = spec.num_heads;
  info.num_kv_heads = spec.num_kv_heads;
  info.head_dim = spec.head_dim;
  info.intermediate_size = spec.intermediate_size;
  info.context_length = context;
  info.bos_token_id = static_cast<int32_t>(config.get_int("bos_token_id", -1));
  info.eos_token_ids = config.eos_token_ids();
  BackendOptions backend_options{options.device, options.num_threads, options.isa};
  // quantize = "bf16" opts in to bf16 dot products (activations rounded to bf16).
  backend_options.bf16_dot = load_quantization(options.quantize) == DType::BF16;
  auto backend = make_backend(backend_options);
  return std::make_unique<DecoderLM>(std::move(files), spec, std::move(weights), std::move(rope),
                                     std::move(backend), context, std::move(info));
}

}  // namespace af::models
