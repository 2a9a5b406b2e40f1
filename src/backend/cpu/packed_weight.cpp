#include "backend/cpu/packed_weight.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "af/core/error.hpp"
#include "backend/cpu/kernels/dense_packed.hpp"
#include "backend/cpu/quant/bf16_dot.hpp"
#include "backend/cpu/quant/kpacked.hpp"
#include "backend/cpu/quant/packed.hpp"

namespace af::cpu {

PackedWeight::PackedWeight(DType type, Layout layout, int64_t n, int64_t k, const std::byte* source)
    : type_(type), layout_(layout), n_(n), k_(k), source_(source) {
  int64_t bytes = 0;
  switch (layout) {
    case Layout::kInt8Blocks:
      bytes = quant::packed::group_count(n) * (k / 32) * quant::packed::group_block_bytes(type);
      break;
    case Layout::kKQuantBlocks:
      bytes = quant::kpacked::group_count(n) * (k / 256) * quant::kpacked::group_block_bytes(type);
      break;
    case Layout::kBf16Pairs:
      bytes = quant::bf16_packed_bytes(n, k);
      break;
    case Layout::kDense:
      bytes = dense::packed_bytes(type == DType::F32   ? WeightType::kF32
                                  : type == DType::F16 ? WeightType::kF16
                                                       : WeightType::kBF16,
                                  n, k);
      break;
  }
  size_ = static_cast<size_t>(bytes);
  // Whole pages of their own, returned to the OS on destruction. Transparent huge pages
  // (MADV_HUGEPAGE) were measured: on a VM they made load 4-5x slower (compaction while
  // faulting) with no decode gain, so plain pages it is.
  constexpr size_t kPage = 4096;
  mapping_size_ = (std::max<size_t>(size_, 1) + kPage - 1) / kPage * kPage;
  void* p =
      ::mmap(nullptr, mapping_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    fail(ErrorCode::kIo, "cpu", "cannot map ", mapping_size_, " bytes for a packed ", name(type),
         " weight: ", std::strerror(errno));
  }
  mapping_ = p;
  data_ = static_cast<uint8_t*>(p);
}

PackedWeight::~PackedWeight() {
  if (mapping_) ::munmap(mapping_, mapping_size_);
}

}  // namespace af::cpu
