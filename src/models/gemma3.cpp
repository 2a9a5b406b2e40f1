// Gemma 3 text (Gemma3ForCausalLM, model_type gemma3_text; GGUF architecture "gemma3", also the
// text part of Gemma3ForConditionalGeneration files). Gemma leaves the shared Llama decoder, so
// it runs its own block:
//   x = embed(ids) * sqrt(hidden)           (the scale rounded to the embedding dtype, as HF)
//   h = post_attention_norm(attn(input_norm(x)));   x += h
//   h = post_ffw_norm(mlp(pre_ffw_norm(x)));        x += h
//   logits = lm_head(norm(x))
// with RMSNorm weights (1 + w) (llama.cpp's converter stores 1 + w already), a GELU-tanh gated MLP,
// per-head RMSNorm on q and k before RoPE, scores scaled by query_pre_attn_scalar^-0.5, and
// sliding-window layers (key j visible to query i when i - j < sliding_window) interleaved with
// global ones, each kind with its own RoPE (global: rope_theta + scaling; local:
// rope_local_base_freq, unscaled).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>

#include "af/backend/key_cache.hpp"
#include "af/core/error.hpp"
#include "af/core/half.hpp"
#include "models/gemma_block.hpp"
#include "models/registry.hpp"

namespace af::models {
namespace {

constexpr const char* kWho = "gemma3";

// Global layers' RoPE: rope_parameters.full_attention (transformers 5), else rope_theta +
// rope_scaling (transformers 4 and the config synthesised from GGUF).
nn::Rope global_rope(const io::HfConfig& config, int64_t head_dim, const nn::VarBuilder& vb,
                     int64_t context) {
  nlohmann::json sub = {{"max_position_embeddings", config.get_int("max_position_embeddings", 0)}};
  const std::optional<io::HfConfig> params = config.object("rope_parameters");
  if (params && params->has("full_attention")) {
    sub["rope_parameters"] = params->json().at("full_attention");
  } else {
    sub["rope_theta"] = config.get_float("rope_theta", 1000000.0);
    if (config.has("rope_scaling")) sub["rope_scaling"] = config.json().at("rope_scaling");
  }
  return nn::Rope::from_config(io::HfConfig(sub, config.origin() + " (full_attention rope)"),
                               head_dim, RopeLayout::kHalf, vb, context);
}

// Sliding layers' RoPE: rope_parameters.sliding_attention, else rope_local_base_freq (GGUF:
// rope.freq_base_swa), default 10000, never scaled.
nn::Rope local_rope(const io::HfConfig& config, const io::ModelFiles& files, int64_t head_dim,
                    const nn::VarBuilder& vb, int64_t context) {
  double theta = config.get_float("rope_local_base_freq", 10000.0);
  const std::optional<io::HfConfig> params = config.object("rope_parameters");
  nlohmann::json sub = {{"max_position_embeddings", config.get_int("max_position_embeddings", 0)}};
  if (params && params->has("sliding_attention")) {
    sub["rope_parameters"] = params->json().at("sliding_attention");
  } else {
    if (files.gguf) {
      if (const io::GgufValue* v = files.gguf->find("gemma3.rope.freq_base_swa"))
        theta = v->as_float("gemma3.rope.freq_base_swa");
    }
    sub["rope_theta"] = theta;
  }
  return nn::Rope::from_config(io::HfConfig(sub, config.origin() + " (sliding_attention rope)"),
                               head_dim, RopeLayout::kHalf, vb, context);
}

GemmaSpec gemma3_spec(const io::HfConfig& config, const io::ModelFiles& files) {
  GemmaSpec spec = GemmaSpec::from_config(config, kWho);
  const bool gguf = files.format == "gguf";
  spec.qk_norm = true;
  spec.norm_weight_offset = gguf ? 0.0f : 1.0f;  // llama.cpp's converter adds the 1
  int64_t window = config.get_int("sliding_window", 0);
  if (gguf) {
    const io::GgufValue* v = files.gguf->find("gemma3.attention.sliding_window");
    window = v ? v->as_int("gemma3.attention.sliding_window") : 0;
    // llama.cpp scales queries by head_dim^-0.5 (hidden / heads for the 27B model, 62 layers)
    // whatever query_pre_attn_scalar was: the GGUF does not keep it.
    const int64_t d = spec.num_layers == 62 ? spec.hidden_size / spec.num_heads : spec.head_dim;
    spec.query_scale = 1.0f / std::sqrt(static_cast<float>(d));
    const char* cap = "gemma3.final_logit_softcapping";
    if (const io::GgufValue* c = files.gguf->find(cap))
      spec.final_softcap = static_cast<float>(c->as_float(cap));
  } else {
    const double scalar = config.get_float("query_pre_attn_scalar", 256.0);
    AF_CHECK(scalar > 0, ErrorCode::kFormat, kWho, config.origin(),
             ": query_pre_attn_scalar must be positive, got ", scalar);
    spec.query_scale = static_cast<float>(std::pow(scalar, -0.5));
    if (config.has("final_logit_softcapping") &&
        !config.json().at("final_logit_softcapping").is_null())
      spec.final_softcap = static_cast<float>(config.get_float("final_logit_softcapping"));
    AF_CHECK(!config.has("attn_logit_softcapping") ||
                 config.json().at("attn_logit_softcapping").is_null(),
             ErrorCode::kUnsupported, kWho, config.origin(),
             ": attn_logit_softcapping is not part of Gemma 3");
  }
  AF_CHECK(window >= 0 && window <= std::numeric_limits<int32_t>::max(), ErrorCode::kFormat, kWho,
           config.origin(), ": sliding_window must be a non-negative integer, got ", window);
  spec.sliding_window = window;
  if (window > 0) spec.sliding = sliding_layers(config, files, spec.num_layers, "gemma3", 6);
  return spec;
}

std::unique_ptr<CausalLM> make_gemma3(io::ModelFiles files, const io::HfConfig& config,
                                      const LoadOptions& options) {
  GemmaSpec spec = gemma3_spec(config, files);
  const int64_t head_dim = spec.head_dim;
  const auto ropes = [&config, head_dim](const io::ModelFiles& f, const nn::VarBuilder& vb,
                                         int64_t context) {
    return GemmaRopes{global_rope(config, head_dim, vb, context),
                      local_rope(config, f, head_dim, vb, context)};
  };
  return make_gemma_lm(std::move(files), config, spec, options, ropes);
}

constexpr std::string_view kClasses[] = {"Gemma3ForCausalLM"};
constexpr io::GgufArchitecture kGguf{
    .gguf_name = "gemma3",
    .hf_class = "Gemma3ForCausalLM",
    .block_names = kGemmaBlockNames,
};

}  // namespace

constinit const ArchitectureInfo kGemma3Architecture{kClasses, make_gemma3, &kGguf};

}  // namespace af::models
