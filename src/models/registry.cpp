#include "models/registry.hpp"

#include <array>
#include <utility>

#include "af/core/error.hpp"
#include "af/models/multimodal.hpp"

namespace af::models {
namespace {

// A plain array: adding a model adds one line (no count to keep in step).
constexpr std::pair<const char*, ModelFactory> kFactories[] = {
    {"LlamaForCausalLM", make_llama},
    {"MistralForCausalLM", make_llama},
    {"Qwen2ForCausalLM", make_qwen2},
    {"Qwen3ForCausalLM", make_qwen3},
    {"MiniCPMForCausalLM", make_minicpm},
    {"MiniCPM4ForCausalLM", make_minicpm},
    {"MiniCPMModel", make_minicpm},
    {"Phi3ForCausalLM", make_phi3},
    {"Gemma2ForCausalLM", make_gemma2},
    {"Gemma3ForCausalLM", make_gemma3},
    {"Qwen2MoeForCausalLM", make_qwen2_moe},
    {"Qwen3MoeForCausalLM", make_qwen3_moe},
    {"MixtralForCausalLM", make_mixtral},
    {"LlavaForConditionalGeneration", make_llava},
    {"LlavaNextForConditionalGeneration", make_llava},
    {"Qwen2AudioForConditionalGeneration", make_qwen2_audio},
    {"Qwen2VLForConditionalGeneration", make_qwen2_vl},
    {"Qwen2_5_VLForConditionalGeneration", make_qwen2_vl},
    {"MiniCPMV", make_minicpmv},
};

constexpr std::array<std::pair<const char*, EncoderFactory>, 1> kEncoderFactories{{
    {"BertModel", make_bert},
}};

}  // namespace

ModelFactory find_factory(const std::string& architecture) {
  for (const auto& [name, factory] : kFactories) {
    if (architecture == name) return factory;
  }
  return nullptr;
}

EncoderFactory find_encoder_factory(const std::string& architecture) {
  for (const auto& [name, factory] : kEncoderFactories) {
    if (architecture == name) return factory;
  }
  return nullptr;
}

std::vector<std::string> supported_architectures() {
  std::vector<std::string> names;
  for (const auto& entry : kFactories) names.emplace_back(entry.first);
  return names;
}

std::unique_ptr<CausalLM> load(const std::string& path, const LoadOptions& options) {
  if (!options.mmproj.empty()) return load_multimodal(path, options.mmproj, options);
  io::ModelFiles files = io::open_model_files(path);
  io::HfConfig config(files.config,
                      files.format == "gguf" ? path + " (GGUF metadata)" : path + " (config.json)");
  const std::string arch = config.architecture();
  ModelFactory factory = find_factory(arch);
  if (!factory && arch == "WhisperForConditionalGeneration") {
    fail(ErrorCode::kUnsupported, "models", path,
         ": Whisper is a speech model, not a causal LM: use af::models::Whisper "
         "(af/models/whisper.hpp) or af-cli transcribe / logits --audio");
  }
  AF_CHECK(factory || !find_encoder_factory(arch), ErrorCode::kUnsupported, "models", path, ": ",
           arch,
           " is a sentence-embedding encoder, not a causal LM: use "
           "af::models::load_encoder / af::Embedder or af-cli embed");
  if (!factory) {
    std::string known;
    for (const std::string& name : supported_architectures()) known += " " + name;
    fail(ErrorCode::kUnsupported, "models", path, ": architecture \"", arch,
         "\" is not supported (supported:", known, ")");
  }
  return factory(std::move(files), config, options);
}

}  // namespace af::models
