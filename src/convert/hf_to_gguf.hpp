#pragma once
// HF folder -> GGUF metadata: the keys every family shares, then the family's own through its
// GgufArchitecture (src/models/<family>.cpp), and the vocabulary from tokenizer.json.
#include <filesystem>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "af/io/architecture.hpp"
#include "af/io/gguf_writer.hpp"
#include "af/io/model_files.hpp"

namespace af::convert {

// What an HF folder converts to: its family's GGUF form and the tensors derived from the
// config (rope_freqs.weight for llama3 RoPE scaling, ...), which come first in the file.
struct HfConversion {
  const io::GgufArchitecture* arch = nullptr;
  std::vector<io::DerivedTensor> derived;
};

// config.json -> llama.cpp's hyperparameter keys; throws kUnsupported naming config.json for a
// class no registered family converts, or a RoPE scaling the family cannot express.
HfConversion write_hf_hparams(io::GgufWriter& w, const io::ModelFiles& files);

// tokenizer.json (BPE, byte-level or with byte fallback) + tokenizer_config.json ->
// tokenizer.ggml.* keys; `bpe_pre` is tokenizer.ggml.pre for a byte-level vocabulary.
void write_tokenizer(io::GgufWriter& w, const std::filesystem::path& dir, std::string_view bpe_pre,
                     const nlohmann::json& config);

}  // namespace af::convert
