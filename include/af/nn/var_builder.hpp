#pragma once
// Weights are declared by their Hugging Face names through a prefix builder:
//   VarBuilder layer = vb.sub("model").sub("layers").sub(i);
//   Tensor w = layer.sub("self_attn").tensor("q_proj.weight", {n_heads * head_dim, hidden});
// Every lookup checks presence and shape and names the full tensor on error.
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "af/core/tensor.hpp"
#include "af/io/model_files.hpp"

namespace af::nn {

class VarBuilder {
 public:
  explicit VarBuilder(const io::WeightSource& source, std::string prefix = "");
  // The same builder (and its subs) with matmul weights to be quantized to `type` at load
  // (nn::Linear / nn::Embedding apply it; norms and biases stay float).
  VarBuilder with_quantization(std::optional<DType> type) const;
  std::optional<DType> quantization() const { return quantize_; }

  VarBuilder sub(std::string_view name) const;
  VarBuilder sub(int64_t index) const;
  std::string path(std::string_view name) const;  // prefix + "." + name
  bool has(std::string_view name) const;

  // The tensor, unchanged (zero-copy where the file allows); shape must equal `expected`.
  Tensor tensor(std::string_view name, const Shape& expected) const;
  // A float32 copy of a small tensor (norm weights, biases) of `expected` shape.
  std::vector<float> f32(std::string_view name, const Shape& expected) const;

 private:
  const io::WeightSource* source_;
  std::string prefix_;
  std::optional<DType> quantize_;
};

}  // namespace af::nn
