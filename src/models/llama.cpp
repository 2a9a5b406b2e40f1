// Llama (Llama 2/3, TinyLlama, Mistral-style checkpoints): the plain pre-norm decoder with
// SwiGLU, RMSNorm and RoPE (default, linear or llama3 scaling), optional attention/MLP biases.
#include "af/core/error.hpp"
#include "models/decoder_lm.hpp"
#include "models/registry.hpp"

namespace af::models {

DecoderSpec llama_decoder_spec(const io::HfConfig& config) {
  DecoderSpec spec = DecoderSpec::from_llama_config(config);
  // Mistral-style sliding windows change which keys a query sees once the sequence is longer
  // than the window; refuse rather than silently attend to everything.
  const int64_t window = config.get_int("sliding_window", 0);
  AF_CHECK(window == 0 || window >= spec.max_position_embeddings, ErrorCode::kUnsupported, "llama",
           config.origin(), ": sliding_window ", window,
           " shorter than the context is not supported yet");
  return spec;
}

std::unique_ptr<CausalLM> make_llama(io::ModelFiles files, const io::HfConfig& config,
                                     const LoadOptions& options) {
  return make_decoder_lm(std::move(files), config, llama_decoder_spec(config), options);
}

}  // namespace af::models
