#pragma once
// The Gemma-family decoder (Gemma 2, Gemma 3 text): sandwich norms around attention and MLP,
// RMSNorm weights (1 + w), GELU-tanh gated MLP, sqrt(hidden) embedding scale, optional per-head
// q/k RMSNorm, sliding-window layers with their own RoPE, and tanh soft-capping of attention
// scores and final logits. Each model file (gemma3.cpp, ...) parses its config into GemmaSpec;
// weights use the HF Gemma names (GGUF names through this family's own table).
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "af/io/architecture.hpp"
#include "af/io/hf_config.hpp"
#include "af/io/model_files.hpp"
#include "af/models/causal_lm.hpp"
#include "af/nn/rope.hpp"
#include "af/nn/var_builder.hpp"

namespace af::models {

struct GemmaSpec {
  int64_t vocab_size = 0, hidden_size = 0, intermediate_size = 0, num_layers = 0;
  int64_t num_heads = 0, num_kv_heads = 0, head_dim = 0, max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = true;
  float query_scale = 1.0f;         // scores = q·k * query_scale
  float norm_weight_offset = 1.0f;  // added to every RMSNorm weight at load (HF: 1, GGUF: 0)
  bool qk_norm = false;             // RMSNorm over each q and k head before RoPE (Gemma 3)
  int64_t sliding_window = 0;       // keys j with i - j < sliding_window on sliding layers
  std::vector<bool> sliding;        // [num_layers], or empty: no sliding layer
  float attn_softcap = 0.0f;        // scores = cap * tanh(scores / cap) when > 0 (Gemma 2)
  float final_softcap = 0.0f;       // logits = cap * tanh(logits / cap) when > 0

  // The sizes every Gemma config shares (hidden_size, num_attention_heads, head_dim, ...) and its
  // activation (gelu_pytorch_tanh); `who` names the model in errors.
  static GemmaSpec from_config(const io::HfConfig& config, const char* who);
};

// Which layers slide: "layer_types" when given, else every layer but each
// sliding_window_pattern-th (default_pattern; GGUF: <gguf_arch>.attention.sliding_window_pattern,
// an int or a list of bools, as llama.cpp reads it).
std::vector<bool> sliding_layers(const io::HfConfig& config, const io::ModelFiles& files,
                                 int64_t n_layers, const std::string& gguf_arch,
                                 int64_t default_pattern);

// llama.cpp's names for Gemma's sandwich norms, where they differ from the shared table
// (GgufArchitecture::block_names of gemma2 and gemma3).
inline constexpr io::TensorName kGemmaBlockNames[] = {
    {"post_attention_norm", "post_attention_layernorm"},
    {"ffn_norm", "pre_feedforward_layernorm"},
    {"post_ffw_norm", "post_feedforward_layernorm"},
};

// RoPE of the global (full-attention) and the sliding layers.
struct GemmaRopes {
  nn::Rope global, local;
};
// Makes the ropes once the context (KV cache rows) is known; vb is the weights' root.
using GemmaRopeFactory =
    std::function<GemmaRopes(const io::ModelFiles&, const nn::VarBuilder&, int64_t context)>;

std::unique_ptr<CausalLM> make_gemma_lm(io::ModelFiles files, const io::HfConfig& config,
                                        GemmaSpec spec, const LoadOptions& options,
                                        const GemmaRopeFactory& ropes);

}  // namespace af::models
