#pragma once
// Built-in causal language models: af::Model plus what runtimes and tools need (all-position
// logits, cache position, architecture facts).
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "af/backend/backend.hpp"
#include "af/core/error.hpp"
#include "af/core/model.hpp"

namespace af::models {

struct LoadOptions {
  // Storage type of the matmul weights (Linear layers and the token embedding; norms and biases
  // stay float32): F32 / F16 / BF16 convert float weights at load, a block type (Q8_0, Q4_0,
  // Q4_K, ...) quantizes them as `quantize` does. Unset: as stored. Computation is float32.
  std::optional<DType> dtype = {};
  Device device = Device::cpu();
  int num_threads = 0;             // 0: all hardware threads
  int64_t context_length = 0;      // KV cache rows; 0: the model's max_position_embeddings,
  int64_t min_context_length = 0;  // ... but at least this many (when context_length is 0)
  std::string isa = {};            // CPU kernels: "" best, or "scalar" / "avx2" / "avx512"
  // Quantize float matmul weights (Linear layers and the token embedding, not norms or biases)
  // at load, e.g. "q8_0", "q4_0", "q4_k"; "" keeps them as stored. Rows that are not whole
  // blocks fall back as llama.cpp does. Only the quantized copy stays resident. The same as
  // dtype, by name (for command lines); both set must agree. One difference: "bf16" here also
  // computes with AVX512_BF16 dot products where the CPU has them (activations rounded to bf16
  // too: slightly different results from the exact float32 path that dtype = BF16 keeps).
  std::string quantize = {};
  // Repack the matmul weights read from the model file at load into the backend's own layout
  // (Backend::prepare_matmul_weight; CPU: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 on AVX-512 VNNI, F32, F16
  // and BF16 on AVX-512, BF16 pairs for quantize = "bf16") and drop the file's copy from memory,
  // so resident memory stays near the file size. Prefill and decode get faster (no packing per
  // call, no horizontal sums, long rows stream better); the cost is the packed copy's fresh
  // memory at load (about 0.16 s for a 350 MB Q4_0 file on a quiet 2-core VM). Without it prefill
  // packs int8 and bf16-dot weight tiles on the fly. Weights converted or quantized at load
  // (`quantize`, `dtype`) are not repacked: their copy would stay resident beside the packed one.
  bool repack_weights = true;
  // The KV cache's element type: F32 (exact, the default), F16 (half the cache memory and the
  // bytes a decode step reads at long context; K and V rounded to f16, as llama.cpp's default
  // cache does) or Q8_0 (8.5 bits per element: blocks of 32 int8 with an f16 scale, as
  // llama.cpp's -ctk/-ctv q8_0). Anything else throws kInvalidArgument at load.
  DType kv_type = DType::F32;
  // The keys' / values' type when it differs from kv_type (llama.cpp's -ctk / -ctv); unset:
  // kv_type. Same types and checks as kv_type.
  std::optional<DType> kv_type_k = {}, kv_type_v = {};
  // Called as loading advances: `done` of `total` steps (the embedding, each layer, the output
  // head), e.g. for a progress bar; unset: nothing is called.
  std::function<void(int64_t done, int64_t total)> on_progress = {};
  // A backend to run on, shared with the other parts of a composition (a LLaVA's image encoder
  // and text decoder); null: one is made from device, num_threads and isa.
  std::shared_ptr<Backend> backend = {};
  // An mmproj GGUF (llama.cpp's image encoder file) to load beside a text model: see
  // af/models/multimodal.hpp. Empty: none.
  std::string mmproj = {};
};

struct ModelInfo {
  std::string architecture;  // config "architectures"[0], e.g. "LlamaForCausalLM"
  std::string format;        // "safetensors" or "gguf"
  std::string path;
  int64_t num_heads = 0, num_kv_heads = 0, head_dim = 0, intermediate_size = 0;
  int64_t context_length = 0;  // KV cache rows allocated
  // The KV cache's key and value element types, and the bytes one position takes in it over
  // all layers (keys + values; 0 for models without a KV cache).
  DType kv_type_k = DType::F32, kv_type_v = DType::F32;
  int64_t kv_bytes_per_token = 0;
  int32_t bos_token_id = -1;
  std::vector<int32_t> eos_token_ids;
};

// One sequence's own KV cache and length, for running several sequences through one model
// (batched decoding in a server). Created by CausalLM::new_sequence, used with forward_batch.
class SequenceState {
 public:
  virtual ~SequenceState() = default;
  virtual int64_t n_past() const = 0;
  virtual int64_t capacity() const = 0;  // KV cache rows
  // Forgets cached positions >= n (keeps a common prefix for reuse).
  virtual void truncate(int64_t n) = 0;
};

// Rows that replace the looked-up token embedding at some positions (image placeholder tokens
// of a LLaVA prompt). The placeholder ids stay in BatchItem::ids, so validation, KV bookkeeping
// and prefix caches keep seeing ids. Empty (the default): every position is a token lookup.
struct InputEmbeddings {
  std::span<const uint8_t> mask;  // [ids.size()]: nonzero where a row replaces the lookup
  std::span<const float> rows;    // [nonzero entries of mask, hidden_size], in position order
  // M-RoPE models (Qwen2-VL): [3][ids.size()] rotary positions (temporal, height, width
  // components) of these ids, as transformers' get_rope_index gives them; the sequence then keeps
  // the rope delta (last position + 1 - its length) so that later ids without positions continue
  // at n_past + delta. Empty: positions n_past + delta + t (delta 0 until positions are given).
  std::span<const int32_t> positions = {};
  bool empty() const { return mask.empty() && positions.empty(); }
};

struct BatchItem {
  SequenceState* sequence = nullptr;
  std::span<const int32_t> ids;  // appended at positions sequence->n_past() ..
  bool all_logits = false;       // logits for every id, or for the last one only
  InputEmbeddings embeddings = {};
};

class CausalLM : public Model {
 public:
  // A fresh sequence with its own KV cache of context_length rows (0: the model's context).
  // Cache memory is reserved lazily, so idle capacity costs address space, not RAM.
  virtual std::unique_ptr<SequenceState> new_sequence(int64_t context_length = 0) = 0;
  // Runs several sequences in one pass over the weights: the matrix products see the tokens of
  // all items at once, attention reads each item's own cache. Returns the logits of the items
  // one after another: ids.size() rows for an all_logits item, 1 row otherwise (vocab floats
  // each). Validates every item (ids in range, capacity, no sequence twice) before changing any
  // state. The model's own sequence (forward / n_past / truncate) is not touched.
  virtual std::vector<float> forward_batch(std::span<const BatchItem> items) = 0;
  // forward_batch returning the final-norm hidden states (the rows lm_head reads; HF's
  // hidden_states[-1]) instead of logits: hidden_size floats per output row. For embeddings.
  // Models without it throw kUnsupported.
  virtual std::vector<float> hidden_batch(std::span<const BatchItem> items) {
    (void)items;
    fail(ErrorCode::kUnsupported, "model", info().architecture, " does not expose hidden states");
  }

  // Appends ids (positions n_past() ..) and returns logits: [ids.size(), vocab] when
  // all_logits, else [1, vocab] for the last position. Throws before changing any state if an
  // id is out of range or the context would overflow.
  virtual std::vector<float> forward(std::span<const int32_t> ids, bool all_logits) = 0;
  // forward() with rows replacing the embedding of the masked positions (see InputEmbeddings).
  // Models that take no input embeddings throw kUnsupported when `embeddings` is not empty.
  virtual std::vector<float> forward_embeds(std::span<const int32_t> ids, bool all_logits,
                                            const InputEmbeddings& embeddings) {
    AF_CHECK(embeddings.empty(), ErrorCode::kUnsupported, "model", info().architecture,
             " does not take input embeddings");
    return forward(ids, all_logits);
  }
  virtual int64_t n_past() const = 0;
  // Forgets cached positions >= n (keeps a common prefix for reuse).
  virtual void truncate(int64_t n) = 0;
  virtual const ModelInfo& info() const = 0;

  std::vector<float> forward_step(std::span<const int32_t> ids) override {
    return forward(ids, false);
  }
  void reset_state() override { truncate(0); }
};

// Opens an HF folder, .safetensors file (config.json beside it) or .gguf file, and builds the
// model its config names. Throws af::Error naming the path, field or tensor at fault.
std::unique_ptr<CausalLM> load(const std::string& path, const LoadOptions& options = {});

}  // namespace af::models
