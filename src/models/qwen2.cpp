// Qwen2 / Qwen2.5: the Llama decoder with biases on q/k/v (not on o_proj), usually tied
// embeddings; RoPE theta 1e6 in released models.
#include "af/core/error.hpp"
#include "models/decoder_lm.hpp"
#include "models/registry.hpp"

namespace af::models {

DecoderSpec qwen2_decoder_spec(const io::HfConfig& config) {
  DecoderSpec spec = DecoderSpec::from_llama_config(config);
  spec.qkv_bias = true;
  spec.o_bias = false;
  spec.mlp_bias = false;
  // Released Qwen2 checkpoints set use_sliding_window false; the window only applies when set.
  AF_CHECK(!config.get_bool("use_sliding_window", false), ErrorCode::kUnsupported, "qwen2",
           config.origin(), ": use_sliding_window true is not supported yet");
  return spec;
}

namespace {

std::unique_ptr<CausalLM> make_qwen2(io::ModelFiles files, const io::HfConfig& config,
                                     const LoadOptions& options) {
  return make_decoder_lm(std::move(files), config, qwen2_decoder_spec(config), options);
}

constexpr std::string_view kClasses[] = {"Qwen2ForCausalLM"};
// HF -> GGUF: the shared keys say all; nothing of its own.
std::vector<io::DerivedTensor> qwen2_gguf_from_config(const io::GgufConversionInput&,
                                                      io::GgufWriter&) {
  return {};
}

constexpr io::GgufArchitecture kGguf{
    .gguf_name = "qwen2",
    .hf_class = "Qwen2ForCausalLM",
    .gguf_from_config = qwen2_gguf_from_config,
    .bpe_pre_tokenizer = "qwen2",  // llama.cpp's Qwen2 pre-tokenizer regex
};

}  // namespace

constinit const ArchitectureInfo kQwen2Architecture{kClasses, make_qwen2, &kGguf};

}  // namespace af::models
