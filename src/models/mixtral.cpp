// Mixtral (MixtralForCausalLM; in GGUF the "llama" architecture with llama.expert_count): the
// Llama decoder whose MLP is the MoE block of moe_block.hpp, its weights given as the softmax
// over the top-k router logits (softmax over all, top-k, renormalised: the same numbers). HF
// files name the experts block_sparse_moe.experts.N.w1 (gate) / w3 (up) / w2 (down); GGUF
// files stack them in blk.N.ffn_{gate,up,down}_exps.
#include <algorithm>

#include "af/core/error.hpp"
#include "models/moe_block.hpp"
#include "models/registry.hpp"

namespace af::models {
namespace {

constexpr const char* kWho = "mixtral";

MoeSpec mixtral_spec(const io::HfConfig& config, const io::ModelFiles& files,
                     const LoadOptions& options) {
  MoeSpec spec = MoeSpec::from_config(config, kWho, "num_local_experts");
  spec.norm_topk_prob = true;
  if (!files.gguf) {
    spec.moe_prefix = "block_sparse_moe";
    spec.expert_names = {"w1", "w3", "w2"};
  }
  // A window at least as long as the session's context never hides a key; a shorter one would.
  const int64_t context = options.context_length > 0 ? options.context_length
                                                     : std::max(spec.base.max_position_embeddings,
                                                                options.min_context_length);
  const bool windowed =
      config.has("sliding_window") && !config.json().at("sliding_window").is_null();
  const int64_t window = windowed ? config.get_int("sliding_window") : 0;
  AF_CHECK(window == 0 || window >= context, ErrorCode::kUnsupported, kWho, config.origin(),
           ": sliding_window ", window, " is shorter than the context of ", context,
           " positions, which is not supported yet (set the context length to at most ", window,
           ")");
  return spec;
}

std::unique_ptr<CausalLM> make_mixtral(io::ModelFiles files, const io::HfConfig& config,
                                       const LoadOptions& options) {
  MoeSpec spec = mixtral_spec(config, files, options);
  return make_moe_lm(std::move(files), config, std::move(spec), options);
}

// Its GGUF files are "llama" ones with experts: llama.cpp's family entry names them Mixtral.
constexpr std::string_view kClasses[] = {"MixtralForCausalLM"};

}  // namespace

constinit const ArchitectureInfo kMixtralArchitecture{kClasses, make_mixtral};

}  // namespace af::models
