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

  // Rotates x[n_tokens, n_heads * head_dim] in place; positions[n_tokens], or for M-RoPE
  // (multi_positions()) positions[3][n_tokens]: temporal, height and width components.
  void apply(Backend& be, float* x, int64_t n_tokens, int64_t n_heads,
             const int32_t* positions) const {
    if (section_freq_.empty()) {
      be.rope(x, n_tokens, n_heads, head_dim_, rotary_dim(), positions, inv_freq_.data(), layout_);
    } else {
      // Each component rotates its own section of frequencies; the others are zero there, a
      // rotation by angle 0 that leaves those dims exactly as they are.
      for (size_t c = 0; c < section_freq_.size(); ++c) {
        be.rope(x, n_tokens, n_heads, head_dim_, rotary_dim(), positions + c * n_tokens,
                section_freq_[c].data(), layout_);
      }
    }
    if (attention_scaling_ != 1.0f) scale_rotated(be, x, n_tokens * n_heads);
  }
  // True for M-RoPE (Qwen2-VL: rope_parameters.mrope_section): apply() then reads 3 position
  // components per token.
  bool multi_positions() const { return !section_freq_.empty(); }

  int64_t rotary_dim() const { return static_cast<int64_t>(inv_freq_.size()) * 2; }
  const std::vector<float>& inv_freq() const { return inv_freq_; }  // [rotary_dim / 2]

 private:
  // cos and sin scaled by m (longrope) is the same as scaling the rotated dims by m; the
  // dims past rotary_dim (partial rotary) pass through unscaled, as in transformers.
  void scale_rotated(Backend& be, float* x, int64_t rows) const;
  static std::vector<std::vector<float>> mrope_sections(const io::HfConfig& params,
                                                        const Rope& rope);

  std::vector<float> inv_freq_;
  // M-RoPE: per position component, inv_freq_ with the other components' sections zeroed.
  std::vector<std::vector<float>> section_freq_;
  int64_t head_dim_ = 0;
  float attention_scaling_ = 1.0f;
  RopeLayout layout_ = RopeLayout::kHalf;
};

}  // namespace af::nn
