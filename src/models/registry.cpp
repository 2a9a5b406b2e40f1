#include "models/registry.hpp"

#include <array>
#include <utility>

#include "af/core/error.hpp"
#include "af/models/model_files.hpp"
#include "af/models/multimodal.hpp"

namespace af::models {

namespace {

#define AF_MODEL_FAMILY_ADDRESS(name) &k##name##Architecture,
constexpr const ArchitectureInfo* kArchitectures[] = {AF_MODEL_FAMILIES(AF_MODEL_FAMILY_ADDRESS)};
#undef AF_MODEL_FAMILY_ADDRESS

constexpr std::array<std::pair<const char*, EncoderFactory>, 1> kEncoderFactories{{
    {"BertModel", make_bert},
}};

}  // namespace

io::GgufArchitectures gguf_architectures() {
  // Built once on first use, then read-only. Every ArchitectureInfo is constant-initialised
  // (constinit) in its own file, so reading them here does not depend on the order of dynamic
  // initialisation between files; they are not constant expressions here (defined elsewhere),
  // hence a const local rather than a constexpr table.
  static const std::vector<const io::GgufArchitecture*> forms = [] {
    std::vector<const io::GgufArchitecture*> out;
    for (const ArchitectureInfo* a : kArchitectures) {
      if (a->gguf) out.push_back(a->gguf);
    }
    return out;
  }();
  return forms;
}

io::ModelFiles open_model_files(const std::string& path) {
  return io::open_model_files(path, gguf_architectures());
}

std::span<const ArchitectureInfo* const> architectures() { return kArchitectures; }

const ArchitectureInfo* find_architecture(std::string_view hf_class) {
  for (const ArchitectureInfo* a : kArchitectures) {
    for (std::string_view name : a->hf_classes) {
      if (name == hf_class) return a;
    }
  }
  return nullptr;
}

ModelFactory find_factory(const std::string& architecture) {
  const ArchitectureInfo* a = find_architecture(architecture);
  return a ? a->factory : nullptr;
}

EncoderFactory find_encoder_factory(const std::string& architecture) {
  for (const auto& [name, factory] : kEncoderFactories) {
    if (architecture == name) return factory;
  }
  return nullptr;
}

std::vector<std::string> supported_architectures() {
  std::vector<std::string> names;
  for (const ArchitectureInfo* a : kArchitectures) {
    for (std::string_view name : a->hf_classes) names.emplace_back(name);
  }
  return names;
}

std::unique_ptr<CausalLM> load(const std::string& path, const LoadOptions& options) {
  if (!options.mmproj.empty()) return load_multimodal(path, options.mmproj, options);
  io::ModelFiles files = open_model_files(path);
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
