#pragma once
// Building blocks of transformer models, each loaded by HF names and run through a Backend.
// Activations are row-major float32: x[rows, features].
#include <cstdint>
#include <memory>
#include <vector>

#include "af/backend/backend.hpp"
#include "af/core/buffer.hpp"
#include "af/nn/var_builder.hpp"

namespace af::nn {

// y[m, out] = x[m, in] · weightᵀ + bias
struct Linear {
  Tensor weight;            // [out, in], any matmul dtype
  std::vector<float> bias;  // [out] or empty
  int64_t in = 0, out = 0;
  // weight in the form `be` computes fastest with (Backend::prepare_matmul_weight), or null.
  std::shared_ptr<const PreparedWeight> prepared;

  static Linear load(const VarBuilder& vb, int64_t in, int64_t out, bool with_bias);
  // Makes `prepared` for be (Backend::prepare_matmul_weight) when the weight is a view of a
  // model file, whose pages the packing releases. An owned weight (converted or quantized at
  // load) is left as is: it would stay resident beside its prepared form.
  void prepare(Backend& be) {
    if (dynamic_cast<const MappedFile*>(weight.buffer().get())) {
      prepared = be.prepare_matmul_weight(weight);
    }
  }
  void forward(Backend& be, const float* x, int64_t m, float* y) const {
    be.matmul(x, m, weight, bias.empty() ? nullptr : bias.data(), y, prepared.get());
  }
  // This product as one of a Backend::matmul_group, writing y.
  Backend::MatmulTarget target(float* y) const {
    return {&weight, bias.empty() ? nullptr : bias.data(), y, prepared.get()};
  }
};

struct RmsNorm {
  std::vector<float> weight;  // [dim]
  float eps = 1e-6f;

  static RmsNorm load(const VarBuilder& vb, int64_t dim, double eps);
  void forward(Backend& be, const float* x, int64_t rows, float* y) const {
    be.rms_norm(x, weight.data(), rows, static_cast<int64_t>(weight.size()), eps, y);
  }
};

// be.matmul_group on x[rows, dim], or on pre_norm(x) when pre_norm is set
// (Backend::rms_norm_matmul_group, with h[rows, dim] as room for the normalised rows: h must then
// not alias x; `who` names the caller in that error).
void matmul_group_after_norm(Backend& be, const RmsNorm* pre_norm, const float* x, int64_t rows,
                             float* h, const Backend::MatmulTarget* targets, int64_t n_targets,
                             const char* who);

struct Embedding {
  Tensor table;  // [vocab, dim]

  static Embedding load(const VarBuilder& vb, int64_t vocab, int64_t dim);
  int64_t vocab() const { return table.shape()[0]; }
  int64_t dim() const { return table.shape()[1]; }
  void forward(Backend& be, const int32_t* ids, int64_t n, float* y) const {
    be.embedding(table, ids, n, y);
  }
};

// SwiGLU feed-forward: down(silu(gate(x)) * up(x)).
struct GatedMlp {
  Linear gate_proj, up_proj, down_proj;

  static GatedMlp load(const VarBuilder& vb, int64_t hidden, int64_t intermediate, bool bias);
  void prepare(Backend& be);
  // x[m, hidden] -> y[m, hidden]; scratch holds 2 * m * intermediate floats. With pre_norm the
  // input is pre_norm(x), fused into the gate/up products (Backend::rms_norm_matmul_group, which
  // may hold the normalised rows in y meanwhile): y must then not alias x.
  void forward(Backend& be, const float* x, int64_t m, float* scratch, float* y,
               const RmsNorm* pre_norm = nullptr) const;
};

}  // namespace af::nn
