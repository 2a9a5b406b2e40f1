// Qwen3-MoE (Qwen3MoeForCausalLM, e.g. Qwen3-30B-A3B; GGUF architecture "qwen3moe"): the Llama
// decoder without biases, RMSNorm over each q and k head before RoPE, and the MoE block of
// moe_block.hpp with no shared expert and the top-k probabilities renormalised
// (norm_topk_prob, which llama.cpp always applies for this architecture).
#include "af/core/error.hpp"
#include "models/moe_block.hpp"
#include "models/registry.hpp"

namespace af::models {
namespace {

constexpr const char* kWho = "qwen3_moe";

MoeSpec qwen3_moe_spec(const io::HfConfig& config, const io::ModelFiles& files) {
  MoeSpec spec = MoeSpec::from_config(config, kWho, "num_experts");
  spec.qk_norm = true;
  spec.norm_topk_prob = files.gguf ? true : config.get_bool("norm_topk_prob", false);
  spec.moe_layers = qwen_moe_layers(config, spec);
  AF_CHECK(!config.get_bool("use_sliding_window", false), ErrorCode::kUnsupported, kWho,
           config.origin(), ": use_sliding_window true is not supported yet");
  return spec;
}

std::unique_ptr<CausalLM> make_qwen3_moe(io::ModelFiles files, const io::HfConfig& config,
                                         const LoadOptions& options) {
  MoeSpec spec = qwen3_moe_spec(config, files);
  return make_moe_lm(std::move(files), config, std::move(spec), options);
}

void qwen3moe_config_from_gguf(const io::GgufMetadata& md, nlohmann::json& c) {
  moe_config_from_gguf(md, c);
}

constexpr std::string_view kClasses[] = {"Qwen3MoeForCausalLM"};
constexpr io::GgufArchitecture kGguf{
    .gguf_name = "qwen3moe",
    .hf_class = "Qwen3MoeForCausalLM",
    .config_from_gguf = qwen3moe_config_from_gguf,
};

}  // namespace

constinit const ArchitectureInfo kQwen3MoeArchitecture{kClasses, make_qwen3_moe, &kGguf};

}  // namespace af::models
