// Llama (Llama 2/3, TinyLlama) and Mistral: the plain pre-norm decoder with SwiGLU, RMSNorm and
// RoPE (default, linear or llama3 scaling), optional attention/MLP biases, and Mistral's
// sliding window (keys j visible to the query at p when p - j < sliding_window).
#include <limits>

#include "af/core/error.hpp"
#include "models/decoder_lm.hpp"
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

std::unique_ptr<CausalLM> make_llama(io::ModelFiles files, const io::HfConfig& config,
                                     const LoadOptions& options) {
  return make_decoder_lm(std::move(files), config, llama_decoder_spec(config), options);
}

}  // namespace af::models
