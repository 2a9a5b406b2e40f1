// Gemma 2 (Gemma2ForCausalLM; GGUF architecture "gemma2"): the Gemma block (gemma_block.hpp)
// without q/k norms, with tanh soft-capping of attention scores (attn_logit_softcapping) and
// final logits (final_logit_softcapping), and a sliding window on every other layer (the even
// ones); one RoPE for all layers.
#include <cmath>
#include <limits>

#include "af/core/error.hpp"
#include "models/gemma_block.hpp"
#include "models/registry.hpp"

namespace af::models {
namespace {

constexpr const char* kWho = "gemma2";

// A soft cap from config.json (null: none) or from GGUF metadata (absent: none).
float softcap(const io::HfConfig& config, const io::ModelFiles& files, const std::string& key) {
  double cap = 0;
  if (files.gguf) {
    if (const io::GgufValue* v = files.gguf->find("gemma2." + key)) cap = v->as_float(key);
  } else if (config.has(key) && !config.json().at(key).is_null()) {
    cap = config.get_float(key);
  }
  AF_CHECK(cap >= 0 && std::isfinite(cap), ErrorCode::kFormat, kWho, config.origin(), ": ", key,
           " must be a non-negative number, got ", cap);
  return static_cast<float>(cap);
}

GemmaSpec gemma2_spec(const io::HfConfig& config, const io::ModelFiles& files) {
  GemmaSpec spec = GemmaSpec::from_config(config, kWho);
  const bool gguf = files.format == "gguf";
  spec.norm_weight_offset = gguf ? 0.0f : 1.0f;  // llama.cpp's converter adds the 1
  spec.attn_softcap = softcap(config, files, "attn_logit_softcapping");
  spec.final_softcap = softcap(config, files, "final_logit_softcapping");
  int64_t window = config.get_int("sliding_window", 4096);
  if (gguf) {
    const io::GgufValue* v = files.gguf->find("gemma2.attention.sliding_window");
    window = v ? v->as_int("gemma2.attention.sliding_window") : 4096;  // llama.cpp's default
    // llama.cpp scales queries by head_dim^-0.5 (hidden / heads for the 27B model, 46 layers).
    const int64_t d = spec.num_layers == 46 ? spec.hidden_size / spec.num_heads : spec.head_dim;
    spec.query_scale = 1.0f / std::sqrt(static_cast<float>(d));
  } else {
    const double scalar = config.get_float("query_pre_attn_scalar", 256.0);
    AF_CHECK(scalar > 0, ErrorCode::kFormat, kWho, config.origin(),
             ": query_pre_attn_scalar must be positive, got ", scalar);
    spec.query_scale = static_cast<float>(std::pow(scalar, -0.5));
  }
  AF_CHECK(window >= 0 && window <= std::numeric_limits<int32_t>::max(), ErrorCode::kFormat, kWho,
           config.origin(), ": sliding_window must be a non-negative integer, got ", window);
  spec.sliding_window = window;
  if (window > 0) spec.sliding = sliding_layers(config, files, spec.num_layers, "gemma2", 2);
  return spec;
}

std::unique_ptr<CausalLM> make_gemma2(io::ModelFiles files, const io::HfConfig& config,
                                      const LoadOptions& options) {
  GemmaSpec spec = gemma2_spec(config, files);
  const int64_t head_dim = spec.head_dim;
  const auto ropes = [&config, head_dim](const io::ModelFiles& f, const nn::VarBuilder& vb,
                                         int64_t context) {
    nn::Rope rope = nn::Rope::from_config(config, head_dim, f.qk_rope_layout, vb, context);
    return GemmaRopes{rope, rope};
  };
  return make_gemma_lm(std::move(files), config, spec, options, ropes);
}

constexpr std::string_view kClasses[] = {"Gemma2ForCausalLM"};
constexpr io::GgufArchitecture kGguf{
    .gguf_name = "gemma2",
    .hf_class = "Gemma2ForCausalLM",
    .block_names = kGemmaBlockNames,
};

}  // namespace

constinit const ArchitectureInfo kGemma2Architecture{kClasses, make_gemma2, &kGguf};

}  // namespace af::models
