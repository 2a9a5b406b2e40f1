#pragma once
// Whisper (transformers' WhisperForConditionalGeneration): an encoder over the log-mel features
// (two conv1d + GELU, learned/sinusoidal positions, pre-LayerNorm transformer) and a decoder with
// causal self-attention over its KV cache and cross-attention over the encoder output; logits
// through the tied token embedding (or proj_out.weight when the checkpoint has its own).
// Float32 computation over the backend's kernels; weights by their HF names from an HF folder.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "af/backend/backend.hpp"
#include "af/io/hf_config.hpp"
#include "af/io/model_files.hpp"
#include "af/models/causal_lm.hpp"

namespace af::models {

struct WhisperConfig {
  int64_t d_model = 0;
  int64_t encoder_layers = 0, encoder_heads = 0, encoder_ffn = 0;
  int64_t decoder_layers = 0, decoder_heads = 0, decoder_ffn = 0;
  int64_t num_mel_bins = 80;
  int64_t max_source_positions = 1500;  // encoder output rows (input frames / 2)
  int64_t max_target_positions = 448;   // decoder positions
  int64_t vocab_size = 0;
  bool scale_embedding = false;  // decoder embeddings * sqrt(d_model)
  double layer_norm_eps = 1e-5;  // torch.nn.LayerNorm's default; Whisper keeps it

  // Reads and checks config.json's keys; errors name the key and the file.
  static WhisperConfig from(const io::HfConfig& config);
  int64_t n_frames() const { return 2 * max_source_positions; }  // mel frames the encoder takes
};

// One audio's decoder state: the cross-attention K/V computed once from the encoder output, and
// the self-attention KV cache preallocated to max_target_positions rows.
struct WhisperState {
  int64_t n_past = 0;  // decoder tokens already in the cache
  // [layer][key_cache_floats(max_source_positions, decoder_heads, head_dim)]: the blocked key
  // layout of af/backend/key_cache.hpp, packed once by start() rather than per decode step.
  std::vector<std::vector<float>> cross_k;
  std::vector<std::vector<float>> cross_v;  // [layer][max_source_positions, d_model]
  std::vector<std::vector<float>> self_k;   // [layer][max_target_positions, d_model]
  std::vector<std::vector<float>> self_v;   // [layer][max_target_positions, d_model]
};

// Cross-attention scores of chosen decoder heads, recorded by Whisper::decode when given (word
// timestamps align tokens to audio with them): q.k / sqrt(head_dim) before the softmax, over
// every encoder position.
struct WhisperCrossScores {
  std::vector<std::pair<int64_t, int64_t>> heads;  // (decoder layer, head)
  // [heads.size(), decoded ids, max_source_positions], filled by decode.
  std::vector<float> scores;
  // Called by decode for layer `layer` with its cross-attention queries q ([m, d_model], before
  // scaling) and the state's blocked keys of that layer (af/backend/key_cache.hpp).
  void record(int64_t layer, const float* q, const float* keys, int64_t m, int64_t heads_total,
              int64_t head_dim, int64_t positions, float scale);
};

// Whether the model at `path` (an HF folder or file) is WhisperForConditionalGeneration, by its
// config's architecture. Throws what models::open_model_files throws for a missing or bad path.
bool is_whisper_model(const std::string& path);

class Whisper {
 public:
  // From an HF folder (config.json with "WhisperForConditionalGeneration", model.safetensors).
  // LoadOptions: num_threads, isa, device, dtype and quantize apply; the KV cache is always
  // float32. Without dtype or quantize, the decoder's per-token float32 weights whose values are
  // all float16 exactly (the CTranslate2 checkpoints, widened) are kept as float16: the same
  // values in half the bytes read per token (the logits stay within float32 rounding, the
  // output projection summing in another order).
  static std::unique_ptr<Whisper> load(const std::string& path, const LoadOptions& options = {});
  ~Whisper();

  const WhisperConfig& config() const { return config_; }
  const std::string& path() const { return files_.path; }
  Backend& backend() { return *backend_; }
  // Weight bytes one decoded token reads: the decoder layers' per-token matmuls and the output
  // projection (cross-attention keys/values are projected once per window, not counted).
  int64_t token_weight_bytes() const { return token_weight_bytes_; }

  // mel: [num_mel_bins, n_frames()] (modalities::LogMel::data) -> [max_source_positions,
  // d_model]. Throws kInvalidArgument for another size.
  std::vector<float> encode(std::span<const float> mel);
  // A fresh decoder state for this encoder output (cross K/V of every layer computed here).
  WhisperState start(std::span<const float> encoded);
  // Appends `ids` to the state's sequence and returns their logits: [ids.size(), vocab_size]
  // when all_logits, else the last position's [vocab_size]. Throws kOutOfRange past
  // max_target_positions and kInvalidArgument for an id outside the vocabulary.
  // With cross_scores, the cross-attention scores of its heads are recorded too.
  std::vector<float> decode(WhisperState& state, std::span<const int32_t> ids, bool all_logits,
                            WhisperCrossScores* cross_scores = nullptr);
  // One token for each of several states (distinct, each at its own position): ids[i] is
  // appended to states[i]; returns [states.size(), vocab_size] logits, row i the same bits as
  // decode(*states[i], {ids[i]}, false) gives. The decoder's weights (most of a step's memory
  // traffic) are read once for all rows: independent windows decoded side by side.
  std::vector<float> decode_step(std::span<WhisperState* const> states,
                                 std::span<const int32_t> ids);

 private:
  struct Weights;
  Whisper() = default;
  void check_state(const WhisperState& state, int64_t n_new) const;
  void forward(std::span<WhisperState* const> states, std::span<const int32_t> ids,
               int64_t per_state, bool all_logits, float* logits, WhisperCrossScores* cross_scores);
  io::ModelFiles files_;
  WhisperConfig config_;
  std::shared_ptr<Backend> backend_;
  std::unique_ptr<Weights> w_;
  int64_t token_weight_bytes_ = 0;
};

}  // namespace af::models
