#include "af/core/tensor.hpp"

#include <cstring>

#include "af/core/error.hpp"
#include "af/core/half.hpp"

namespace af {
namespace {

int64_t tensor_bytes(DType dtype, const Shape& shape) {
  int64_t inner = shape.rank() ? shape[shape.rank() - 1] : 1;
  int64_t rows = inner == 0 ? 0 : shape.numel() / inner;
  int64_t total = 0;
  AF_CHECK(checked_mul(rows, row_bytes(dtype, inner), &total), ErrorCode::kFormat, "tensor",
           "byte size of ", name(dtype), " ", shape.str(), " overflows");
  return total;
}

}  // namespace

Tensor::Tensor(DType dtype, Shape shape, std::shared_ptr<const Buffer> buffer,
               const std::byte* data)
    : dtype_(dtype), shape_(shape), buffer_(std::move(buffer)), data_(data) {
  AF_CHECK(buffer_ != nullptr, ErrorCode::kInternal, "tensor", "view without a buffer");
  nbytes_ = static_cast<size_t>(tensor_bytes(dtype, shape_));
  const std::byte* begin = buffer_->data();
  AF_CHECK(data_ >= begin && static_cast<size_t>(data_ - begin) <= buffer_->size() &&
               nbytes_ <= buffer_->size() - static_cast<size_t>(data_ - begin),
           ErrorCode::kFormat, "tensor", name(dtype), " ", shape_.str(), " (", nbytes_,
           " bytes) does not lie inside its buffer of ", buffer_->size(), " bytes");
}

Tensor Tensor::zeros(DType dtype, Shape shape) {
  auto buffer = std::make_shared<OwnedBuffer>(static_cast<size_t>(tensor_bytes(dtype, shape)));
  const std::byte* data = buffer->data();
  return Tensor(dtype, shape, std::move(buffer), data);
}

Tensor Tensor::from_f32(Shape shape, const float* values) {
  Tensor t = zeros(DType::F32, shape);
  if (t.nbytes_) std::memcpy(t.mutable_data(), values, t.nbytes_);
  return t;
}

std::byte* Tensor::mutable_data() {
  auto owned = std::dynamic_pointer_cast<const OwnedBuffer>(buffer_);
  AF_CHECK(owned != nullptr, ErrorCode::kInvalidArgument, "tensor",
           "mutable access to a tensor that views a read-only buffer");
  return const_cast<std::byte*>(data_);
}

Tensor Tensor::to_f32() const {
  Tensor out = zeros(DType::F32, shape_);
  float* dst = reinterpret_cast<float*>(out.mutable_data());
  int64_t n = numel();
  switch (dtype_) {
    case DType::F32:
      if (n) std::memcpy(dst, data_, static_cast<size_t>(n) * 4);
      break;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(as<uint16_t>()[i]);
      break;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(as<uint16_t>()[i]);
      break;
    case DType::F64:
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(as<double>()[i]);
      break;
    default:
      fail(ErrorCode::kUnsupported, "tensor", "conversion of ", name(dtype_),
           " to f32 is not available in this version");
  }
  return out;
}

Tensor Tensor::reshape(Shape shape) const {
  AF_CHECK(shape.numel() == shape_.numel(), ErrorCode::kInvalidArgument, "tensor",
           "cannot reshape ", shape_.str(), " to ", shape.str());
  return Tensor(dtype_, shape, buffer_, data_);
}

}  // namespace af
