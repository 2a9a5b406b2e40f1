#pragma once
// What a model needs from disk, whatever the format: an HF-style config (config.json, or one
// synthesised from GGUF metadata with the same keys) and weights addressed by Hugging Face names.
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "af/backend/backend.hpp"
#include "af/core/tensor.hpp"
#include "af/io/architecture.hpp"
#include "af/io/gguf.hpp"

namespace af::io {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual bool has(const std::string& hf_name) const = 0;
  // Throws kFormat naming the tensor and the source when absent.
  virtual Tensor get(const std::string& hf_name) const = 0;
  virtual std::vector<std::string> names() const = 0;  // HF names, sorted
  virtual std::string origin() const = 0;              // path for messages
};

struct ModelFiles {
  std::string path;
  std::string format;     // "safetensors" or "gguf"
  nlohmann::json config;  // HF config.json keys
  std::unique_ptr<WeightSource> weights;
  // Layout of q_proj/k_proj rows as stored: GGUF files of the Llama family hold them permuted
  // for interleaved RoPE (llama.cpp's converter), HF files for rotate-half. Models rotate with
  // this layout, so no weight needs rewriting.
  RopeLayout qk_rope_layout = RopeLayout::kHalf;
  // The parsed GGUF file (metadata such as the tokenizer vocabulary); null for safetensors.
  std::shared_ptr<const GgufFile> gguf;
  // The GGUF file's family (its tensor names, af/io/architecture.hpp); null for safetensors
  // and mmproj files.
  const GgufArchitecture* gguf_architecture = nullptr;
};

// `path` is an HF folder (model.safetensors or model.safetensors.index.json + shards, and
// config.json), a single .safetensors file with config.json beside it, or a .gguf file (either
// file also when its name says otherwise: the first bytes decide). Anything else throws kFormat
// "unrecognised model format" naming what was expected. A GGUF file's general.architecture must
// be one of `architectures` (kUnsupported listing them otherwise); clip (an mmproj) always opens.
// models::open_model_files (af/models/model_files.hpp) passes every registered family.
ModelFiles open_model_files(const std::string& path, GgufArchitectures architectures);

// What a file holds, from its first bytes (whatever its name): "gguf" (the GGUF magic),
// "safetensors" (a little-endian header length, then '{'), "json" (a '{' after white space), or
// "" for anything else, a folder or an unreadable path.
std::string sniff_file_format(const std::string& path);

// GGUF <-> Hugging Face tensor names through the shared table in io/ (e.g. "blk.3.attn_q.weight"
// <-> "model.layers.3.self_attn.q_proj.weight"); names outside it come back unchanged. A family's
// own names: the overloads in af/io/architecture.hpp.
std::string hf_name_from_gguf(const std::string& gguf_name);
std::string gguf_name_from_hf(const std::string& hf_name);

// Reads a JSON file; errors name the path and the parse position.
nlohmann::json read_json_file(const std::string& path);

}  // namespace af::io
