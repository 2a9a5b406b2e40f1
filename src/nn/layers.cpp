#include "af/nn/layers.hpp"

#include "af/backend/quant.hpp"
#include "af/core/error.hpp"
#include "nn/quantize_weight.hpp"

namespace af::nn {
namespace {

// Fail at load, naming the tensor, rather than at the first forward.
Tensor matmul_weight(const VarBuilder& vb, const Shape& shape) {
  Tensor t = vb.tensor("weight", shape);
  AF_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F16 || t.dtype() == DType::BF16 ||
               quant::is_supported(t.dtype()),
           ErrorCode::kUnsupported, "nn", vb.path("weight"), " is stored as ", name(t.dtype()),
           ", which has no matmul kernel (f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_K, "
           "q3_K, q4_K, q5_K, q6_K do)");
  if (const auto target = vb.quantization()) return quantize_weight(t, *target, vb.path("weight"));
  return t;
}

}  // namespace

Linear Linear::load(const VarBuilder& vb, int64_t in, int64_t out, bool with_bias) {
  Linear l;
  l.in = in;
  l.out = out;
  l.weight = matmul_weight(vb, {out, in});
  if (with_bias) l.bias = vb.f32("bias", {out});
  return l;
}

void matmul_group_after_norm(Backend& be, const RmsNorm* pre_norm, const float* x, int64_t rows,
                             float* h, const Backend::MatmulTarget* targets, int64_t n_targets,
                             const char* who) {
  if (!pre_norm) return be.matmul_group(x, rows, targets, n_targets);
  AF_CHECK(x != h, ErrorCode::kInvalidArgument, "nn", who,
           ": with a pre-norm, the output must not alias the input");
  be.rms_norm_matmul_group(x, pre_norm->weight.data(), pre_norm->eps, rows,
                           static_cast<int64_t>(pre_norm->weight.size()), h, targets, n_targets);
}

RmsNorm RmsNorm::load(const VarBuilder& vb, int64_t dim, double eps) {
  return RmsNorm{vb.f32("weight", {dim}), static_cast<float>(eps)};
}

Embedding Embedding::load(const VarBuilder& vb, int64_t vocab, int64_t dim) {
  return Embedding{matmul_weight(vb, {vocab, dim})};
}

GatedMlp GatedMlp::load(const VarBuilder& vb, int64_t hidden, int64_t intermediate, bool bias) {
  return GatedMlp{Linear::load(vb.sub("gate_proj"), hidden, intermediate, bias),
                  Linear::load(vb.sub("up_proj"), hidden, intermediate, bias),
                  Linear::load(vb.sub("down_proj"), intermediate, hidden, bias)};
}

void GatedMlp::prepare(Backend& be) {
  gate_proj.prepare(be);
  up_proj.prepare(be);
  down_proj.prepare(be);
}

void GatedMlp::forward(Backend& be, const float* x, int64_t m, float* scratch, float* y,
                       const RmsNorm* pre_norm) const {
  float* gate = scratch;                    // [m, intermediate]
  float* up = scratch + m * gate_proj.out;  // [m, intermediate]
  const Backend::MatmulTarget both[] = {gate_proj.target(gate), up_proj.target(up)};
  matmul_group_after_norm(be, pre_norm, x, m, y, both, 2, "GatedMlp::forward");
  be.silu_mul(gate, up, m * gate_proj.out);
  down_proj.forward(be, gate, m, y);
}

}  // namespace af::nn
