// Qwen2-MoE / Qwen1.5-MoE (Qwen2MoeForCausalLM; GGUF architecture "qwen2moe"): the Qwen2
// decoder (q/k/v biases) whose MLP is the MoE block of moe_block.hpp with a shared expert
// scaled by sigmoid(shared_expert_gate · h), top-k probabilities not renormalised unless
// norm_topk_prob, and dense layers where decoder_sparse_step / mlp_only_layers say so.
#include "af/core/error.hpp"
#include "models/moe_block.hpp"
#include "models/registry.hpp"

namespace af::models {
namespace {

constexpr const char* kWho = "qwen2_moe";

MoeSpec qwen2_moe_spec(const io::HfConfig& config, const io::ModelFiles& files) {
  MoeSpec spec = MoeSpec::from_config(config, kWho, "num_experts");
  // llama.cpp's converter keeps the biases as tensors and no qkv_bias key.
  spec.base.qkv_bias = files.gguf ? files.weights->has("model.layers.0.self_attn.q_proj.bias")
                                  : config.get_bool("qkv_bias", true);
  spec.base.o_bias = spec.base.mlp_bias = false;
  spec.shared_intermediate = config.get_int("shared_expert_intermediate_size", 0);
  AF_CHECK(spec.shared_intermediate >= 0, ErrorCode::kFormat, kWho, config.origin(),
           ": shared_expert_intermediate_size must not be negative, got ",
           spec.shared_intermediate);
  spec.norm_topk_prob = config.get_bool("norm_topk_prob", false);  // llama.cpp: never
  spec.moe_layers = qwen_moe_layers(config, spec);
  AF_CHECK(!config.get_bool("use_sliding_window", false), ErrorCode::kUnsupported, kWho,
           config.origin(), ": use_sliding_window true is not supported yet");
  return spec;
}

std::unique_ptr<CausalLM> make_qwen2_moe(io::ModelFiles files, const io::HfConfig& config,
                                         const LoadOptions& options) {
  MoeSpec spec = qwen2_moe_spec(config, files);
  return make_moe_lm(std::move(files), config, std::move(spec), options);
}

void qwen2moe_config_from_gguf(const io::GgufMetadata& md, nlohmann::json& c) {
  moe_config_from_gguf(md, c);
}

constexpr std::string_view kClasses[] = {"Qwen2MoeForCausalLM"};
constexpr io::GgufArchitecture kGguf{
    .gguf_name = "qwen2moe",
    .hf_class = "Qwen2MoeForCausalLM",
    .config_from_gguf = qwen2moe_config_from_gguf,
};

}  // namespace

constinit const ArchitectureInfo kQwen2MoeArchitecture{kClasses, make_qwen2_moe, &kGguf};

}  // namespace af::models
