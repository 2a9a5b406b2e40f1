#pragma once
// Model factories by the "architectures" name in config.json. Adding a model means adding its
// file and one line in registry.cpp.
#include <memory>
#include <string>
#include <vector>

#include "af/io/hf_config.hpp"
#include "af/io/model_files.hpp"
#include "af/models/causal_lm.hpp"
#include "af/models/encoder.hpp"

namespace af::models {

using ModelFactory = std::unique_ptr<CausalLM> (*)(io::ModelFiles files, const io::HfConfig& config,
                                                   const LoadOptions& options);

std::unique_ptr<CausalLM> make_llama(io::ModelFiles, const io::HfConfig&, const LoadOptions&);
std::unique_ptr<CausalLM> make_qwen2(io::ModelFiles, const io::HfConfig&, const LoadOptions&);
std::unique_ptr<CausalLM> make_qwen3(io::ModelFiles, const io::HfConfig&, const LoadOptions&);
std::unique_ptr<CausalLM> make_minicpm(io::ModelFiles, const io::HfConfig&, const LoadOptions&);
std::unique_ptr<CausalLM> make_phi3(io::ModelFiles, const io::HfConfig&, const LoadOptions&);
std::unique_ptr<CausalLM> make_gemma2(io::ModelFiles, const io::HfConfig&, const LoadOptions&);
std::unique_ptr<CausalLM> make_gemma3(io::ModelFiles, const io::HfConfig&, const LoadOptions&);
std::unique_ptr<CausalLM> make_qwen2_moe(io::ModelFiles, const io::HfConfig&, const LoadOptions&);
std::unique_ptr<CausalLM> make_qwen3_moe(io::ModelFiles, const io::HfConfig&, const LoadOptions&);
std::unique_ptr<CausalLM> make_mixtral(io::ModelFiles, const io::HfConfig&, const LoadOptions&);
std::unique_ptr<CausalLM> make_llava(io::ModelFiles, const io::HfConfig&, const LoadOptions&);
std::unique_ptr<CausalLM> make_qwen2_audio(io::ModelFiles, const io::HfConfig&, const LoadOptions&);
std::unique_ptr<CausalLM> make_qwen2_vl(io::ModelFiles, const io::HfConfig&, const LoadOptions&);
std::unique_ptr<CausalLM> make_minicpmv(io::ModelFiles, const io::HfConfig&, const LoadOptions&);

// Sentence-embedding encoders (af/models/encoder.hpp) by the same "architectures" name.
using EncoderFactory = std::unique_ptr<EncoderModel> (*)(io::ModelFiles files,
                                                         const io::HfConfig& config,
                                                         const LoadOptions& options);
std::unique_ptr<EncoderModel> make_bert(io::ModelFiles, const io::HfConfig&, const LoadOptions&);

// nullptr when unknown.
ModelFactory find_factory(const std::string& architecture);
EncoderFactory find_encoder_factory(const std::string& architecture);
std::vector<std::string> supported_architectures();

}  // namespace af::models
