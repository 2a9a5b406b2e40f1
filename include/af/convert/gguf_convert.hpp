#pragma once
// Writing GGUF files that llama.cpp loads, from a GGUF file (metadata copied, tensors
// re-encoded) or an HF folder (converted: llama.cpp's metadata keys and tensor names, each
// family's own keys and derived tensors from its GgufArchitecture in src/models/<family>.cpp,
// the vocabulary from tokenizer.json). Per-tensor types follow llama.cpp's mixtures
// (llama_model_quantize): norms and 1-D tensors stay F32, the output / tied embedding gets
// Q6_K, attn_v and ffn_down get more bits in some layers for *_k_m, and a row that is not a
// multiple of a K-quant's 256 falls back to a 32-block type. `af-cli quantize` is a front end.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "af/core/dtype.hpp"

namespace af::convert {

// A target: llama-quantize's name for it, the type most matrices get and llama.cpp's
// llama_ftype number (general.file_type).
struct GgufTarget {
  std::string_view name;  // "q4_k_m", "f16", ... (lower case)
  DType base;
  uint32_t file_type;
};

struct GgufWriteOptions {
  int threads = 0;  // 0: all cores
  // HF input: copy the tokenizer.* keys of this GGUF file instead of reading tokenizer.json.
  std::string vocab_from;
  // Called before each tensor's data is written: its 0-based index, the total and a line such
  // as "blk.3.ffn_down.weight q6_K 1.2 MiB" (for a progress display); may be empty.
  std::function<void(int64_t index, int64_t total, const std::string& detail)> on_tensor;
  // Notes on choices made (a row length that makes a tensor fall back to another type).
  std::function<void(const std::string& note)> on_note;
};

struct GgufWriteSummary {
  size_t tensors = 0;
  std::map<std::string, int> types;  // type name ("q4_K") -> tensors written with it
};

// Writes `out` from `in` (a GGUF file or an HF folder, as models::open_model_files opens them).
// Throws af::Error naming the file, key or tensor at fault; nothing is written then.
GgufWriteSummary write_gguf(const std::string& in, const std::string& out, const GgufTarget& target,
                            const GgufWriteOptions& options = {});

}  // namespace af::convert
