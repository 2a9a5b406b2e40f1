// Qwen3 (dense, Qwen3ForCausalLM; GGUF architecture "qwen3"): the Llama decoder without qkv
// biases and with an RMSNorm over each q and k head before RoPE (self_attn.q_norm / k_norm,
// weight [head_dim]). head_dim comes from the config and may differ from hidden / heads
// (Qwen3-0.6B: 1024 / 16 heads, head_dim 128); embeddings are tied in the small models only.
#include "af/core/error.hpp"
#include "models/decoder_lm.hpp"
#include "models/registry.hpp"

namespace af::models {

namespace {

std::unique_ptr<CausalLM> make_qwen3(io::ModelFiles files, const io::HfConfig& config,
                                     const LoadOptions& options) {
  DecoderSpec spec = DecoderSpec::from_llama_config(config);
  spec.qk_norm = true;
  // Released Qwen3 checkpoints set use_sliding_window false (their sliding_window key is then
  // ignored by transformers too).
  AF_CHECK(!config.get_bool("use_sliding_window", false), ErrorCode::kUnsupported, "qwen3",
           config.origin(), ": use_sliding_window true is not supported yet");
  return make_decoder_lm(std::move(files), config, spec, options);
}

constexpr std::string_view kClasses[] = {"Qwen3ForCausalLM"};
// HF -> GGUF: the shared keys say all; nothing of its own.
std::vector<io::DerivedTensor> qwen3_gguf_from_config(const io::GgufConversionInput&,
                                                      io::GgufWriter&) {
  return {};
}

constexpr io::GgufArchitecture kGguf{
    .gguf_name = "qwen3",
    .hf_class = "Qwen3ForCausalLM",
    .gguf_from_config = qwen3_gguf_from_config,
    .bpe_pre_tokenizer = "qwen2",  // llama.cpp's Qwen2 pre-tokenizer regex
};

}  // namespace

constinit const ArchitectureInfo kQwen3Architecture{kClasses, make_qwen3, &kGguf};

}  // namespace af::models
