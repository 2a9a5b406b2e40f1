#pragma once
// Rotary position embedding parameters, computed once from the config as transformers does
// (float32 inverse frequencies), for the rope types "default", "linear", "llama3" and "longrope"
// (LongRoPE: short or long factors chosen per session context, and its cos/sin scale).
#include <cstdint>
#include <vector>

#include "af/backend/backend.hpp"
#include "af/io/hf_config.hpp"
#include "af/nn/var_builder.hpp"

namespace af::nn {

class Rope {
 public:
  // Reads rope_theta + rope_scaling (transformers 4 configs) or rope_parameters (transformers 5)
  // and partial_rotary_factor. GGUF files store per-frequency divisors as tensors instead
  // (rope_freqs.weight for llama3, rope_factors_{short,long}.weight for longrope); they are
  // looked up in `weights` (the root VarBuilder). `context` is the number of positions the
  // session will use (longrope picks its long factors past the original context).
  static Rope from_config(const io::HfConfig& config, int64_t head_dim, RopeLayout layout,
                          const VarBuilder& weights, int64_t context);

  // Rotates x[n_tokens, n_heads * head_dim] in place; positions[n_tokens].
  void apply(Backend& be, float* x, int64_t n_tokens, int64_t n_heads,
             const int32_t* positions) const {
    be.rope(x, n_tokens, n_heads, head_dim_, rotary_dim(), positions, inv_freq_.data(), layout_);
    if (attention_scaling_ != 1.0f) scale_rotated(be, x, n_tokens * n_heads);
  }

  int64_t rotary_dim() const { return static_cast<int64_t>(inv_freq_.size()) * 2; }
  const std::vector<float>& inv_freq() const { return inv_freq_; }  // [rotary_dim / 2]

 private:
  // cos and sin scaled by m (longrope) is the same as scaling the rotated dims by m; the
  // dims past rotary_dim (partial rotary) pass through unscaled, as in transformers.
  void scale_rotated(Backend& be, float* x, int64_t rows) const;

  std::vector<float> inv_freq_;
  int64_t head_dim_ = 0;
  float attention_scaling_ = 1.0f;
  RopeLayout layout_ = RopeLayout::kHalf;
};

}  // namespace af::nn
