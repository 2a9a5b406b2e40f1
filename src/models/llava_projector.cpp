#include "models/llava_projector.hpp"

#include "af/core/error.hpp"

namespace af::models {

LlavaProjector LlavaProjector::load(const nn::VarBuilder& vb, const ProjectorSpec& spec) {
  LlavaProjector p;
  p.spec_ = spec;
  p.linear_1_ = nn::Linear::load(vb.sub("linear_1"), spec.in, spec.out, spec.bias);
  if (spec.kind == ProjectorSpec::Kind::kMlp2x) {
    p.linear_2_ = nn::Linear::load(vb.sub("linear_2"), spec.out, spec.out, spec.bias);
  }
  return p;
}

void LlavaProjector::prepare(Backend& be) {
  linear_1_.prepare(be);
  if (spec_.kind == ProjectorSpec::Kind::kMlp2x) linear_2_.prepare(be);
}

void LlavaProjector::forward(Backend& be, const float* x, int64_t rows, float* y) const {
  if (spec_.kind == ProjectorSpec::Kind::kLinear) return linear_1_.forward(be, x, rows, y);
  std::vector<float> mid(static_cast<size_t>(rows * spec_.out));
  linear_1_.forward(be, x, rows, mid.data());
  be.gelu(mid.data(), rows * spec_.out, spec_.act);
  linear_2_.forward(be, mid.data(), rows, y);
}

}  // namespace af::models
