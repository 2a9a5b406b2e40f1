#pragma once
// Model families by the "architectures" name in config.json (and by general.architecture in
// GGUF). Each family describes itself in one ArchitectureInfo, defined in its own file
// (src/models/<family>.cpp); adding a model means adding that file and one line to
// AF_MODEL_FAMILIES below (docs/ARCHITECTURE.md, "Adding an architecture").
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "af/io/architecture.hpp"
#include "af/io/hf_config.hpp"
#include "af/io/model_files.hpp"
#include "af/models/causal_lm.hpp"
#include "af/models/encoder.hpp"

namespace af::models {

using ModelFactory = std::unique_ptr<CausalLM> (*)(io::ModelFiles files, const io::HfConfig& config,
                                                   const LoadOptions& options);

// One model family: everything the rest of the library asks about it.
struct ArchitectureInfo {
  std::span<const std::string_view> hf_classes;  // config.json "architectures" names it loads
  ModelFactory factory;
  // Its GGUF form (architecture name, metadata keys, tensor names, HF -> GGUF conversion);
  // null when it loads from HF folders only.
  const io::GgufArchitecture* gguf = nullptr;
};

// Every family, one line each, in the order "supported" lists name them: X(Name) refers to
// `const ArchitectureInfo kNameArchitecture`, defined (constinit) in the family's file.
#define AF_MODEL_FAMILIES(X) \
  X(Llama)                   \
  X(Qwen2)                   \
  X(Qwen3)                   \
  X(MiniCpm)                 \
  X(Phi3)                    \
  X(Gemma2)                  \
  X(Gemma3)                  \
  X(Qwen2Moe)                \
  X(Qwen3Moe)                \
  X(Mixtral)                 \
  X(Llava)                   \
  X(Qwen2Audio)              \
  X(Qwen2Vl)                 \
  X(MiniCpmV)

#define AF_DECLARE_MODEL_FAMILY(name) extern const ArchitectureInfo k##name##Architecture;
AF_MODEL_FAMILIES(AF_DECLARE_MODEL_FAMILY)
#undef AF_DECLARE_MODEL_FAMILY

// Sentence-embedding encoders (af/models/encoder.hpp) by the same "architectures" name.
using EncoderFactory = std::unique_ptr<EncoderModel> (*)(io::ModelFiles files,
                                                         const io::HfConfig& config,
                                                         const LoadOptions& options);
std::unique_ptr<EncoderModel> make_bert(io::ModelFiles, const io::HfConfig&, const LoadOptions&);

// All families, in AF_MODEL_FAMILIES order.
std::span<const ArchitectureInfo* const> architectures();
// The family that loads config.json's "architectures" name `hf_class`; nullptr when none.
const ArchitectureInfo* find_architecture(std::string_view hf_class);

// nullptr when unknown.
ModelFactory find_factory(const std::string& architecture);
EncoderFactory find_encoder_factory(const std::string& architecture);
std::vector<std::string> supported_architectures();

}  // namespace af::models
