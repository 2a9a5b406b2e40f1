#pragma once
// The minimum a model must offer to be driven by AlloyForge's sampling and sessions. A user can
// implement it in their own code; built-in models implement the richer af::models::CausalLM.
#include <cstdint>
#include <span>
#include <vector>

namespace af {

struct ModelConfig {
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
};

class Model {
 public:
  virtual ~Model() = default;
  // Forgets all processed tokens (the KV cache, for a transformer).
  virtual void reset_state() = 0;
  // Appends `ids` to the sequence, processing them in one call, and returns the logits of the
  // last position: vocab_size floats.
  virtual std::vector<float> forward_step(std::span<const int32_t> ids) = 0;
  virtual ModelConfig config() const = 0;
};

}  // namespace af
