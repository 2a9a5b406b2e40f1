#pragma once
// The mixture-of-experts decoder (Qwen2-MoE, Qwen3-MoE, Mixtral): the Llama pre-norm decoder
//   x += attn(rms_norm(x));  x += ffn(rms_norm(x))
// whose ffn is, on MoE layers, a router choosing top_k SwiGLU experts per token
//   p = softmax(router · h);  (e_i, w_i) = top_k(p)  [w_i /= sum w when norm_topk_prob]
//   y = sum_i w_i * expert_{e_i}(h)  [+ sigmoid(shared_gate · h) * shared_expert(h)]
// (Mixtral's softmax over the top-k logits is the renormalised form), and whose attention may
// RMS-normalise each q and k head before RoPE (Qwen3). Each model file parses its config into
// MoeSpec; weights use HF names (GGUF's 3-D ffn_*_exps tensors are sliced per expert).
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "af/backend/backend.hpp"
#include "af/io/architecture.hpp"
#include "af/io/hf_config.hpp"
#include "af/io/model_files.hpp"
#include "af/models/causal_lm.hpp"
#include "af/nn/layers.hpp"
#include "models/decoder_lm.hpp"

namespace af::models {

struct MoeSpec {
  DecoderSpec base;  // sizes; base.intermediate_size is the dense layers' MLP width
  int64_t num_experts = 0, top_k = 0;
  int64_t expert_intermediate = 0;  // each expert's MLP width
  int64_t shared_intermediate = 0;  // the shared expert's width; 0: none
  bool norm_topk_prob = false;      // renormalise the top-k probabilities to sum 1
  bool qk_norm = false;             // RMSNorm over each q / k head before RoPE
  std::vector<bool> moe_layers;     // [num_layers]: true where the ffn is the MoE block
  // Where a layer keeps its MoE weights and what its experts' projections are called:
  // "mlp" + gate_proj/up_proj/down_proj (Qwen, and every GGUF), "block_sparse_moe" + w1/w3/w2
  // (Mixtral's HF files).
  std::string moe_prefix = "mlp";
  std::array<std::string, 3> expert_names = {"gate_proj", "up_proj", "down_proj"};
  const char* who = "moe";  // names the model in errors

  // The MoE keys every family shares (num_experts / num_local_experts, num_experts_per_tok,
  // moe_intermediate_size), checked against the sizes; the caller sets the rest.
  static MoeSpec from_config(const io::HfConfig& config, const char* who,
                             const char* num_experts_key);
};

// Which layers are MoE: every decoder_sparse_step-th one not listed in mlp_only_layers (Qwen).
std::vector<bool> qwen_moe_layers(const io::HfConfig& config, const MoeSpec& spec);

// The router's choice for n tokens, as the HF models compute it: softmax over the experts'
// logits[n, num_experts] in float32, the top_k probabilities by torch.topk (largest first; of
// equal ones the lower expert index first), divided by their sum when renormalize.
// experts[n, top_k], weights[n, top_k].
void route_top_k(const float* logits, int64_t n, int64_t num_experts, int64_t top_k,
                 bool renormalize, int32_t* experts, float* weights);

// Room the MoE ffn needs, grown on demand and kept by the model between calls.
struct MoeScratch {
  std::vector<float> logits, weights, rows, gate, up, out;
  std::vector<int32_t> experts;
  std::vector<int64_t> order, offsets;
};

// The MoE ffn of one layer.
struct MoeFfn {
  struct Expert {
    nn::Linear gate, up, down;  // [ff, hidden], [ff, hidden], [hidden, ff]
  };
  nn::Linear router;            // [num_experts, hidden]
  std::vector<Expert> experts;  // [num_experts]
  nn::GatedMlp shared;          // the shared expert, when shared_gate.out == 1
  nn::Linear shared_gate;       // [1, hidden] or empty
  int64_t hidden = 0, ff = 0, shared_ff = 0, top_k = 0;
  bool renormalize = false;

  static MoeFfn load(const nn::VarBuilder& layer, const MoeSpec& spec);
  void prepare(Backend& be);
  // y[n, hidden] = ffn(h[n, hidden]) (h already normalised). Prefill groups the rows routed to
  // each expert (one product per expert over its rows) and adds each expert's weighted output
  // in ascending expert order, as transformers does, so no result depends on the thread count;
  // a single row runs only its top_k experts' vector products.
  void forward(Backend& be, const float* h, int64_t n, MoeScratch& scratch, float* y) const;

 private:
  void forward_one(Backend& be, const float* h, MoeScratch& scratch, float* y) const;
  void add_shared(Backend& be, const float* h, int64_t n, MoeScratch& scratch, float* y) const;
};

std::unique_ptr<CausalLM> make_moe_lm(io::ModelFiles files, const io::HfConfig& config,
                                      MoeSpec spec, const LoadOptions& options);

// llama.cpp's expert keys (<arch>.expert_count, ...) under the names config.json uses, for the
// MoE families' GgufArchitecture::config_from_gguf; false (nothing written) without experts.
bool moe_config_from_gguf(const io::GgufMetadata& md, nlohmann::json& config);

}  // namespace af::models
