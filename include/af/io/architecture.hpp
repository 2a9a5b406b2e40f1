#pragma once
// What io needs to know about one model family to read its GGUF files and to write them from HF
// folders: the GGUF architecture name, the HF class a config synthesised from GGUF names, how
// llama.cpp's converter lays out q/k rows, the family's own metadata keys and tensor names.
// Each family declares one in its own file (src/models/<family>.cpp, inside its
// models::ArchitectureInfo); models/registry.cpp lists the families, and callers of io pass
// their GGUF parts in (GgufArchitectures; af/models/model_files.hpp does it for the registry's
// families), so io never includes models/ (the layering rule) and holds no list of its own.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "af/backend/backend.hpp"
#include "af/core/tensor.hpp"
#include "af/io/gguf.hpp"

namespace af::io {

class GgufWriter;

// One GGUF <-> HF tensor-name pair, stems without ".weight" / ".bias": per layer
// ("attn_q" <-> "self_attn.q_proj" inside "blk.N." / "model.layers.N.") or whole-model.
struct TensorName {
  std::string_view gguf;
  std::string_view hf;
};

// llama.cpp's tensor names shared by the decoder families (its LLM_TENSOR names); a family's
// own GgufArchitecture::block_names come first and may rename any of them.
std::span<const TensorName> shared_global_names();
std::span<const TensorName> shared_block_names();

// A GGUF file's metadata under one architecture prefix ("llama."), whose errors name the file
// and the key. float32 values read back as the shortest decimal that rounds to the same float
// (1e-5f reads as 1e-05, as in config.json).
class GgufMetadata {
 public:
  GgufMetadata(const GgufFile& file, std::string prefix)
      : file_(file), prefix_(std::move(prefix)) {}

  const GgufFile& file() const { return file_; }
  const std::string& prefix() const { return prefix_; }  // "<architecture>."

  // Keys as given, whole ("tokenizer.ggml.tokens") or after the prefix (arch(...)).
  std::string arch(std::string_view key) const { return prefix_ + std::string(key); }
  const GgufValue* find(const std::string& key) const { return file_.find(key); }
  const GgufValue& require(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  double get_float(const std::string& key) const;
  double get_float(const std::string& key, double fallback) const {
    return find(key) ? get_float(key) : fallback;
  }
  // A special token id, or nullopt when absent or outside [0, vocab): converters write
  // 0xFFFFFFFF (-1 as int32) for "none", and llama.cpp ignores any id past the vocabulary.
  std::optional<int64_t> special_id(const std::string& key, int64_t vocab) const;

 private:
  const GgufFile& file_;
  std::string prefix_;
};

// What an HF folder's config gives a family's GGUF writer: the config and the numbers the
// shared part of the conversion already checked.
struct GgufConversionInput {
  const nlohmann::json& config;  // config.json
  const std::string& origin;     // for messages: ".../config.json"
  std::string prefix;            // "<architecture>."
  int64_t hidden = 0, heads = 0, layers = 0, head_dim = 0;
  const nlohmann::json* rope = nullptr;  // rope_parameters or rope_scaling; null when neither
  std::string rope_type;                 // "default" when none
  double rope_theta = 10000.0;

  // config.json's integer `key`; throws kFormat naming the file when absent or not an integer.
  int64_t get_int(const char* key) const;
  // `object`'s number `key` (of the config or the rope settings), or `fallback`.
  static double number(const nlohmann::json& object, const char* key, double fallback);
};

// A tensor a conversion derives from the config (rope_freqs.weight, rope_factors_*.weight).
struct DerivedTensor {
  std::string gguf_name;
  Tensor value;  // F32
};

struct GgufArchitecture {
  std::string_view gguf_name;  // general.architecture, e.g. "llama"
  std::string_view hf_class;   // "architectures"[0] of the config synthesised from GGUF
  // q/k rows as llama.cpp's converter stores them: permuted for interleaved RoPE in the Llama
  // family, as HF's rotate-half elsewhere.
  RopeLayout rope_layout = RopeLayout::kHalf;
  // Per-layer names of this family that differ from or add to shared_block_names() (looked up
  // first), e.g. Gemma's sandwich norms.
  std::span<const TensorName> block_names = {};
  // This family's metadata keys -> HF config keys, after the shared ones (embedding_length,
  // block_count, rope.freq_base, ...) are in `config`; null when it has none.
  void (*config_from_gguf)(const GgufMetadata& md, nlohmann::json& config) = nullptr;

  // HF -> GGUF conversion (af/convert/hf_to_gguf.hpp); null: this family does not convert.
  // Writes the family's own keys after the shared ones and returns the tensors it derives.
  std::vector<DerivedTensor> (*gguf_from_config)(const GgufConversionInput& in,
                                                 GgufWriter& writer) = nullptr;
  // RoPE scaling types it converts beyond "default" and "linear".
  std::span<const std::string_view> extra_rope_types = {};
  // tokenizer.ggml.pre for a byte-level BPE vocabulary (llama.cpp's pre-tokenizer regex).
  std::string_view bpe_pre_tokenizer = "llama-bpe";
};

// The families whose GGUF files a reader accepts: given by the caller on each call
// (models::gguf_architectures() for every registered family), never stored in io.
using GgufArchitectures = std::span<const GgufArchitecture* const>;
// The one of `known` named `gguf_name` (general.architecture); nullptr when none is.
const GgufArchitecture* find_gguf_architecture(GgufArchitectures known, std::string_view gguf_name);

// GGUF <-> HF tensor names for one family (its block_names first, then the shared tables);
// names outside them come back unchanged. `arch` null: the shared tables only.
std::string hf_name_from_gguf(const std::string& gguf_name, const GgufArchitecture* arch);
std::string gguf_name_from_hf(const std::string& hf_name, const GgufArchitecture* arch);

}  // namespace af::io
