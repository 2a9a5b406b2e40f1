#pragma once
// LLaVA's multimodal projector: vision features -> text hidden size. "mlp2x_gelu" (HF's
// LlavaMultiModalProjector: linear_1, act, linear_2) or "linear" (linear_1 only), with or without
// biases (multimodal_projector_bias).
#include <cstdint>
#include <vector>

#include "af/backend/backend.hpp"
#include "af/nn/layers.hpp"
#include "af/nn/var_builder.hpp"

namespace af::models {

struct ProjectorSpec {
  enum class Kind { kLinear, kMlp2x };
  Kind kind = Kind::kMlp2x;
  int64_t in = 0;   // vision hidden_size * number of feature layers
  int64_t out = 0;  // text hidden_size
  bool bias = true;
  GeluKind act = GeluKind::kErf;
};

class LlavaProjector {
 public:
  // vb holds "linear_1.*" (and "linear_2.*" for kMlp2x), by HF names.
  static LlavaProjector load(const nn::VarBuilder& vb, const ProjectorSpec& spec);
  void prepare(Backend& be);
  const ProjectorSpec& spec() const { return spec_; }
  // y[rows, out] from x[rows, in].
  void forward(Backend& be, const float* x, int64_t rows, float* y) const;

 private:
  ProjectorSpec spec_;
  nn::Linear linear_1_, linear_2_;
};

}  // namespace af::models
