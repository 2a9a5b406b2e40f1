#include "af/nn/var_builder.hpp"

#include <cstring>

#include "af/core/error.hpp"

namespace af::nn {

VarBuilder::VarBuilder(const io::WeightSource& source, std::string prefix)
    : source_(&source), prefix_(std::move(prefix)) {}

std::string VarBuilder::path(std::string_view name) const {
  if (prefix_.empty()) return std::string(name);
  return prefix_ + "." + std::string(name);
}

VarBuilder VarBuilder::with_quantization(std::optional<DType> type) const {
  VarBuilder vb = *this;
  vb.quantize_ = type;
  return vb;
}

VarBuilder VarBuilder::sub(std::string_view name) const {
  VarBuilder vb(*source_, path(name));
  vb.quantize_ = quantize_;
  return vb;
}

VarBuilder VarBuilder::sub(int64_t index) const { return sub(std::to_string(index)); }

bool VarBuilder::has(std::string_view name) const { return source_->has(path(name)); }

Tensor VarBuilder::tensor(std::string_view name, const Shape& expected) const {
  std::string full = path(name);
  Tensor t = source_->get(full);
  AF_CHECK(t.shape() == expected, ErrorCode::kFormat, "weights", source_->origin(), ": tensor ",
           full, " has shape ", t.shape().str(), ", the config implies ", expected.str());
  return t;
}

std::vector<float> VarBuilder::f32(std::string_view name, const Shape& expected) const {
  Tensor t = tensor(name, expected).to_f32();
  std::vector<float> out(static_cast<size_t>(t.numel()));
  if (!out.empty()) std::memcpy(out.data(), t.data(), out.size() * sizeof(float));
  return out;
}

}  // namespace af::nn
