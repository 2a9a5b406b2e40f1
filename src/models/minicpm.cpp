// MiniCPM (config "minicpm", MiniCPM-1B/2B) and MiniCPM4 (config "minicpm4"): the Llama decoder
// with muP-style scales from the original modeling_minicpm.py:
//   embeddings * scale_emb, residual adds * scale_depth / sqrt(num_hidden_layers),
//   final hidden states / (hidden_size / dim_model_base) before lm_head.
#include <cmath>

#include "af/core/error.hpp"
#include "models/decoder_lm.hpp"
#include "models/registry.hpp"

namespace af::models {

std::unique_ptr<CausalLM> make_minicpm(io::ModelFiles files, const io::HfConfig& config,
                                       const LoadOptions& options) {
  DecoderSpec spec = DecoderSpec::from_llama_config(config);
  const double scale_emb = config.get_float("scale_emb", 1.0);
  const double scale_depth = config.get_float("scale_depth", 1.0);
  const double dim_model_base =
      config.get_float("dim_model_base", static_cast<double>(spec.hidden_size));
  AF_CHECK(scale_emb > 0 && scale_depth > 0 && dim_model_base > 0, ErrorCode::kFormat, "minicpm",
           config.origin(), ": scale_emb, scale_depth and dim_model_base must be positive");
  spec.embed_scale = static_cast<float>(scale_emb);
  spec.residual_scale =
      static_cast<float>(scale_depth / std::sqrt(static_cast<double>(spec.num_layers)));
  spec.logit_divisor = static_cast<float>(static_cast<double>(spec.hidden_size) / dim_model_base);
  return make_decoder_lm(std::move(files), config, spec, options);
}

}  // namespace af::models
