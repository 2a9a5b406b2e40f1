// MiniCPM (config "minicpm", MiniCPM-1B/2B) and MiniCPM4 (config "minicpm4"): the Llama decoder
// with muP-style scales from the original modeling_minicpm.py:
//   embeddings * scale_emb, residual adds * scale_depth / sqrt(num_hidden_layers),
//   final hidden states / (hidden_size / dim_model_base) before lm_head.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "af/core/error.hpp"
#include "af/io/gguf_writer.hpp"
#include "models/decoder_lm.hpp"
#include "models/registry.hpp"

namespace af::models {

namespace {

constexpr const char* kWho = "minicpm";

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

// convert_hf_to_gguf.py writes embedding_scale = scale_emb, residual_scale = scale_depth /
// sqrt(num_hidden_layers), logit_scale = hidden / dim_model_base.
void minicpm_config_from_gguf(const io::GgufMetadata& md, nlohmann::json& c) {
  const int64_t hidden = c["hidden_size"].get<int64_t>();
  const int64_t layers = c["num_hidden_layers"].get<int64_t>();
  c["scale_emb"] = md.get_float(md.arch("embedding_scale"));
  c["scale_depth"] =
      md.get_float(md.arch("residual_scale")) * std::sqrt(static_cast<double>(layers));
  const double logit_scale = md.get_float(md.arch("logit_scale"));
  AF_CHECK(logit_scale > 0 && std::isfinite(logit_scale), ErrorCode::kFormat, "model_files",
           md.file().origin(), ": metadata key '", md.arch("logit_scale"),
           "' must be positive, got ", logit_scale);
  const double base = static_cast<double>(hidden) / logit_scale;
  // HF configs hold dim_model_base as an integer; float32 rounding should not change that.
  if (std::abs(base - std::round(base)) < 1e-3 * std::max(1.0, base)) {
    c["dim_model_base"] = static_cast<int64_t>(std::llround(base));
  } else {
    c["dim_model_base"] = base;
  }
}

// HF -> GGUF: MiniCPM's muP scales and MiniCPM4's LongRoPE factors.
std::vector<io::DerivedTensor> minicpm_gguf_from_config(const io::GgufConversionInput& in,
                                                        io::GgufWriter& w) {
  const nlohmann::json& c = in.config;
  const std::string& p = in.prefix;
  std::vector<io::DerivedTensor> derived;
  if (in.rope_type == "longrope") {
    // MiniCPM4: the HF code picks long_factor, and scales cos/sin by
    // sqrt(1 + ln(max / orig) / ln(orig)), once max_position_embeddings exceeds the original
    // context. The converter writes neither that scale nor the original context, and llama.cpp
    // uses the short factors up to context_length, so only the short-factor case converts.
    const nlohmann::json& rope = *in.rope;
    const int64_t max_pos = c.value("max_position_embeddings", int64_t{2048});
    const double orig = io::GgufConversionInput::number(
        rope, "original_max_position_embeddings",
        io::GgufConversionInput::number(c, "original_max_position_embeddings", 0.0));
    AF_CHECK(orig > 0, ErrorCode::kFormat, kWho, in.origin,
             ": longrope RoPE scaling needs \"original_max_position_embeddings\"");
    AF_CHECK(static_cast<double>(max_pos) <= orig, ErrorCode::kUnsupported, kWho, in.origin,
             ": longrope with max_position_embeddings ", max_pos,
             " > original_max_position_embeddings ", orig,
             " (long factors and a cos/sin scale) cannot be expressed in GGUF for llama.cpp");
    w.set_string(p + "rope.scaling.type", "longrope");
    const int64_t n = (in.hidden / in.heads) / 2;
    for (const char* which : {"long", "short"}) {
      const std::string key = std::string(which) + "_factor";
      const auto it = rope.find(key);
      AF_CHECK(it != rope.end() && it->is_array() && static_cast<int64_t>(it->size()) == n,
               ErrorCode::kFormat, kWho, in.origin, ": longrope RoPE scaling needs \"", key,
               "\" as a list of ", n, " numbers");
      std::vector<float> factors;
      for (const nlohmann::json& f : *it) {
        AF_CHECK(f.is_number() && f.get<double>() > 0, ErrorCode::kFormat, kWho, in.origin, ": \"",
                 key, "\" holds a non-positive or non-numeric entry ", f.dump());
        factors.push_back(f.get<float>());
      }
      derived.push_back(
          {"rope_factors_" + std::string(which) + ".weight",
           Tensor::from_f32(Shape{static_cast<int64_t>(factors.size())}, factors.data())});
    }
  }
  // llama.cpp falls back to MiniCPM-2B's values when a key is missing, so all three are always
  // written, with the defaults of our own HF loader (no scaling).
  const double scale_emb = io::GgufConversionInput::number(c, "scale_emb", 1.0);
  const double scale_depth = io::GgufConversionInput::number(c, "scale_depth", 1.0);
  const double dim_model_base =
      io::GgufConversionInput::number(c, "dim_model_base", static_cast<double>(in.hidden));
  AF_CHECK(scale_emb > 0 && scale_depth > 0 && dim_model_base > 0, ErrorCode::kFormat, kWho,
           in.origin, ": scale_emb, scale_depth and dim_model_base must be positive");
  w.set_f32(p + "embedding_scale", static_cast<float>(scale_emb));
  w.set_f32(p + "residual_scale",
            static_cast<float>(scale_depth / std::sqrt(static_cast<double>(in.layers))));
  // llama.cpp divides the logits by logit_scale (as MiniCPM divides the final hidden state).
  w.set_f32(p + "logit_scale", static_cast<float>(static_cast<double>(in.hidden) / dim_model_base));
  return derived;
}

constexpr std::string_view kRopeTypes[] = {"longrope"};

// MiniCPM4 checkpoints say MiniCPMForCausalLM; MiniCPM4ForCausalLM is accepted too.
constexpr std::string_view kClasses[] = {"MiniCPMForCausalLM", "MiniCPM4ForCausalLM",
                                         "MiniCPMModel"};
constexpr io::GgufArchitecture kGguf{
    .gguf_name = "minicpm",
    .hf_class = "MiniCPMForCausalLM",
    .rope_layout = RopeLayout::kInterleaved,  // llama.cpp permutes q/k rows
    .config_from_gguf = minicpm_config_from_gguf,
    .gguf_from_config = minicpm_gguf_from_config,
    .extra_rope_types = kRopeTypes,
};

}  // namespace

constinit const ArchitectureInfo kMiniCpmArchitecture{kClasses, make_minicpm, &kGguf};

}  // namespace af::models
