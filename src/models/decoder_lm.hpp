#pragma once
// The pre-norm decoder-only transformer shared by the Llama family (Llama, Qwen2, MiniCPM):
//   x = embed(ids) * embed_scale
//   x += residual_scale * attn(rms_norm(x));  x += residual_scale * mlp(rms_norm(x))
//   logits = lm_head(rms_norm(x) / logit_divisor)
// Each model file parses its own config into DecoderSpec; weights use HF Llama names.
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "af/io/hf_config.hpp"
#include "af/io/model_files.hpp"
#include "af/models/causal_lm.hpp"
#include "af/nn/attention.hpp"
#include "af/nn/layers.hpp"

namespace af::models {

struct DecoderSpec {
  int64_t vocab_size = 0, hidden_size = 0, intermediate_size = 0, num_layers = 0;
  int64_t num_heads = 0, num_kv_heads = 0, head_dim = 0, max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  bool qkv_bias = false, o_bias = false, mlp_bias = false, tie_word_embeddings = false;
  bool qk_norm = false;  // self_attn.q_norm / k_norm: RMSNorm per head before RoPE (Qwen3)
  // Mistral: every layer's query at position p sees keys j with p - j < sliding_window (0:
  // all); its KV cache is then a ring of that many rows.
  int64_t sliding_window = 0;
  float embed_scale = 1.0f;
  float residual_scale = 1.0f;
  float logit_divisor = 1.0f;

  // The Llama keys every model of the family shares (hidden_size, num_attention_heads, ...).
  static DecoderSpec from_llama_config(const io::HfConfig& config);
};

struct DecoderWeights {
  struct Layer {
    nn::RmsNorm input_layernorm, post_attention_layernorm;
    nn::SelfAttention self_attn;
    nn::GatedMlp mlp;
  };
  nn::Embedding embed_tokens;
  std::vector<Layer> layers;
  nn::RmsNorm norm;
  nn::Linear lm_head;  // tied: a view of embed_tokens' table

  // body: where embed_tokens, layers and norm lie ("model"; LLaVA: "model.language_model" or
  // "language_model.model"); head: the lm_head's prefix ("lm_head", "language_model.lm_head").
  // `progress` (may be empty) hears done/total steps: the embedding, each layer, the head.
  static DecoderWeights load(const nn::VarBuilder& body, const nn::VarBuilder& head,
                             const DecoderSpec& spec,
                             const std::function<void(int64_t, int64_t)>& progress = {});
  // Puts every matmul weight in be's preferred form (nn::Linear::prepare). A tied lm_head's
  // table stays readable for the token lookup (which faults in the rows it reads again).
  void prepare(Backend& be);
};

// Where a composition model (LLaVA) keeps its text decoder.
struct DecoderRoot {
  std::string body = "model";       // prefix of embed_tokens, layers, norm
  std::string lm_head = "lm_head";  // prefix of lm_head.weight
};

// The specs of the text models a composition can hold (llama.cpp, qwen2.cpp).
DecoderSpec llama_decoder_spec(const io::HfConfig& config);
DecoderSpec qwen2_decoder_spec(const io::HfConfig& config);

// The matmul weights' load type from options.dtype / options.quantize (checked; nullopt: as
// stored).
std::optional<DType> load_weight_type(const LoadOptions& options);

std::unique_ptr<CausalLM> make_decoder_lm(io::ModelFiles files, const io::HfConfig& config,
                                          DecoderSpec spec, const LoadOptions& options);
// The same over files shared with other parts of a composition (kept alive by the decoder).
std::unique_ptr<CausalLM> make_decoder_lm(std::shared_ptr<const io::ModelFiles> files,
                                          const io::HfConfig& config, DecoderSpec spec,
                                          const LoadOptions& options, const DecoderRoot& root);

}  // namespace af::models
