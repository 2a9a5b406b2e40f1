// Llama (Llama 2/3, TinyLlama) and Mistral: the plain pre-norm decoder with SwiGLU, RMSNorm and
// RoPE (default, linear or llama3 scaling), optional attention/MLP biases, and Mistral's
// sliding window (keys j visible to the query at p when p - j < sliding_window).
#include <cmath>
#include <limits>
#include <numbers>
#include <vector>

#include "af/core/error.hpp"
#include "af/io/gguf_writer.hpp"
#include "models/decoder_lm.hpp"
#include "models/moe_block.hpp"
#include "models/registry.hpp"

namespace af::models {

DecoderSpec llama_decoder_spec(const io::HfConfig& config) {
  DecoderSpec spec = DecoderSpec::from_llama_config(config);
  // Mistral-style sliding window over every layer (null or absent: none); a window shorter
  // than the session's context makes each layer's KV cache a ring of that many rows.
  const int64_t window = config.get_int("sliding_window", 0);
  AF_CHECK(window >= 0 && window <= std::numeric_limits<int32_t>::max(), ErrorCode::kFormat,
           "llama", config.origin(), ": sliding_window must be a non-negative integer, got ",
           window);
  spec.sliding_window = window;
  return spec;
}

namespace {

std::unique_ptr<CausalLM> make_llama(io::ModelFiles files, const io::HfConfig& config,
                                     const LoadOptions& options) {
  return make_decoder_lm(std::move(files), config, llama_decoder_spec(config), options);
}

// Mistral's window: llama.cpp's converter does not write it for the llama architecture (and
// llama.cpp attends to every key there); a file that carries it gets the window. A llama file
// with experts is Mixtral (mixtral.cpp).
void llama_config_from_gguf(const io::GgufMetadata& md, nlohmann::json& c) {
  if (md.find(md.arch("attention.sliding_window")))
    c["sliding_window"] = md.get_int(md.arch("attention.sliding_window"));
  if (moe_config_from_gguf(md, c))
    c["architectures"] = nlohmann::json::array({"MixtralForCausalLM"});
}

// A required positive number of the rope settings (llama3 scaling).
double rope_number(const nlohmann::json& rope, const nlohmann::json& config, const char* key,
                   const std::string& origin) {
  double v = io::GgufConversionInput::number(rope, key, 0.0);
  // Like the converter, original_max_position_embeddings may sit at the top level.
  if (v == 0.0 && std::string_view(key) == "original_max_position_embeddings")
    v = io::GgufConversionInput::number(config, key, 0.0);
  AF_CHECK(v > 0 && std::isfinite(v), ErrorCode::kFormat, "llama", origin,
           ": llama3 RoPE scaling needs a positive number \"", key, "\"");
  return v;
}

// The per-frequency divisors of llama3 RoPE scaling, stored as rope_freqs.weight (llama.cpp
// divides each base frequency by its entry). Computed in float32 in the order of operations of
// llama.cpp's converter (a torch float32 tensor against Python floats), so the tensor matches
// the one it writes.
std::vector<float> llama3_rope_divisors(const nlohmann::json& rope, const nlohmann::json& config,
                                        double theta, int64_t head_dim, const std::string& origin) {
  const double factor = rope_number(rope, config, "factor", origin);
  const double low = rope_number(rope, config, "low_freq_factor", origin);
  const double high = rope_number(rope, config, "high_freq_factor", origin);
  const double old_ctx = rope_number(rope, config, "original_max_position_embeddings", origin);
  AF_CHECK(high > low, ErrorCode::kFormat, "llama", origin,
           ": llama3 RoPE scaling needs high_freq_factor > low_freq_factor");
  const float low_wavelen = static_cast<float>(old_ctx / low);
  const float high_wavelen = static_cast<float>(old_ctx / high);
  const float two_pi = static_cast<float>(2 * std::numbers::pi);
  std::vector<float> divisors;
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    const float freq = 1.0f / std::pow(static_cast<float>(theta), exponent);
    const float wavelen = (1.0f / freq) * two_pi;
    if (wavelen < high_wavelen) {
      divisors.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      divisors.push_back(static_cast<float>(factor));
    } else {
      const float smooth =
          ((1.0f / wavelen) * static_cast<float>(old_ctx) - static_cast<float>(low)) /
          static_cast<float>(high - low);
      divisors.push_back(1.0f / ((1.0f - smooth) / static_cast<float>(factor) + smooth));
    }
  }
  return divisors;
}

// HF -> GGUF: llama.cpp's own keys for this family (vocab_size), Mistral's window (llama.cpp's
// converter drops it; our loader reads it back), llama3 RoPE scaling as rope_freqs.weight.
std::vector<io::DerivedTensor> llama_gguf_from_config(const io::GgufConversionInput& in,
                                                      io::GgufWriter& w) {
  const nlohmann::json& c = in.config;
  w.set_u32(in.prefix + "vocab_size", static_cast<uint32_t>(in.get_int("vocab_size")));
  if (c.contains("sliding_window") && c.at("sliding_window").is_number_integer())
    w.set_u32(in.prefix + "attention.sliding_window",
              static_cast<uint32_t>(in.get_int("sliding_window")));
  if (in.rope_type != "llama3") return {};
  const std::vector<float> divisors =
      llama3_rope_divisors(*in.rope, c, in.rope_theta, in.head_dim, in.origin);
  return {{"rope_freqs.weight",
           Tensor::from_f32(Shape{static_cast<int64_t>(divisors.size())}, divisors.data())}};
}

constexpr std::string_view kRopeTypes[] = {"llama3"};
constexpr std::string_view kClasses[] = {"LlamaForCausalLM", "MistralForCausalLM"};
constexpr io::GgufArchitecture kGguf{
    .gguf_name = "llama",
    .hf_class = "LlamaForCausalLM",
    .rope_layout = RopeLayout::kInterleaved,  // llama.cpp permutes q/k rows
    .config_from_gguf = llama_config_from_gguf,
    .gguf_from_config = llama_gguf_from_config,
    .extra_rope_types = kRopeTypes,
};

}  // namespace

constinit const ArchitectureInfo kLlamaArchitecture{kClasses, make_llama, &kGguf};

}  // namespace af::models
