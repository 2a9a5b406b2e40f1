#pragma once
// A weight repacked into a row-group layout, in pages of its own.
#include <cstddef>
#include <cstdint>

#include "af/backend/backend.hpp"

namespace af::cpu {

class PackedWeight final : public PreparedWeight {
 public:
  enum class Layout {
    kInt8Blocks,    // quant/packed.hpp: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 for vpdpbusd
    kBf16Pairs,     // quant/bf16_dot.hpp: BF16 for vdpbf16ps
    kDense,         // kernels/dense_packed.hpp: F32, F16, BF16 widened to float
    kKQuantBlocks,  // quant/kpacked.hpp: Q4_K, Q5_K, Q6_K for vpdpbusd
  };
  // Allocates (uninitialised) room for the packed form of the n x k weight of `type` whose
  // bytes start at `source`. Throws af::Error(kIo) if the memory cannot be had.
  PackedWeight(DType type, Layout layout, int64_t n, int64_t k, const std::byte* source);
  ~PackedWeight() override;
  PackedWeight(const PackedWeight&) = delete;
  PackedWeight& operator=(const PackedWeight&) = delete;

  DType type() const { return type_; }
  Layout layout() const { return layout_; }
  int64_t rows() const { return n_; }
  int64_t cols() const { return k_; }
  // The weight it was made from, to check that a matmul gets the matching pair.
  const std::byte* source() const { return source_; }
  const uint8_t* data() const { return data_; }
  uint8_t* mutable_data() { return data_; }
  size_t size() const { return size_; }

 private:
  DType type_;
  Layout layout_;
  int64_t n_, k_;
  const std::byte* source_;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  void* mapping_ = nullptr;
  size_t mapping_size_ = 0;
};

}  // namespace af::cpu
