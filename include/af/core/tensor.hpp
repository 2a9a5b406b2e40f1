#pragma once
// A Tensor is an immutable typed view into a Buffer; copying a Tensor shares the buffer.
#include <cstddef>
#include <memory>
#include <string>

#include "af/core/buffer.hpp"
#include "af/core/dtype.hpp"
#include "af/core/shape.hpp"

namespace af {

class Tensor {
 public:
  Tensor() = default;
  // Views `bytes` bytes at `data` inside `buffer`; checks that the view lies inside the buffer
  // and that shape/dtype need exactly that many bytes.
  Tensor(DType dtype, Shape shape, std::shared_ptr<const Buffer> buffer, const std::byte* data);
  // A new zero-filled owned tensor.
  static Tensor zeros(DType dtype, Shape shape);
  // An owned F32 tensor holding a copy of `values` (values.size() must equal shape.numel()).
  static Tensor from_f32(Shape shape, const float* values);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t numel() const { return shape_.numel(); }
  size_t nbytes() const { return nbytes_; }
  const std::byte* data() const { return data_; }
  // Writable access is only legal for tensors created by zeros()/from_f32 (owned buffers).
  std::byte* mutable_data();
  template <class T>
  const T* as() const {
    return reinterpret_cast<const T*>(data_);
  }
  bool defined() const { return buffer_ != nullptr; }
  const std::shared_ptr<const Buffer>& buffer() const { return buffer_; }

  // Converts any dense or supported type to a new owned F32 tensor of the same shape.
  Tensor to_f32() const;
  // The same bytes with another shape of equal numel (rows must stay block aligned).
  Tensor reshape(Shape shape) const;

 private:
  DType dtype_ = DType::F32;
  Shape shape_;
  std::shared_ptr<const Buffer> buffer_;
  const std::byte* data_ = nullptr;
  size_t nbytes_ = 0;
};

}  // namespace af
