#include "backend/cpu/packed_weight.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "af/core/error.hpp"
#include "backend/cpu/quant/packed.hpp"

namespace af::cpu {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kPage = 4096;

size_t round_up(size_t v, size_t to) { return (v + to - 1) / to * to; }

}  // namespace

PackedWeight::PackedWeight(DType type, int64_t n, int64_t k, const std::byte* source)
    : type_(type), n_(n), k_(k), source_(source) {
  size_ = static_cast<size_t>(quant::packed::group_count(n) * (k / 32) *
                              quant::packed::group_block_bytes(type));
  // Small weights get plain pages; large ones a 2 MiB aligned range cut out of a larger mapping.
  const bool huge = size_ >= kHugePage;
  const size_t body = round_up(size_ == 0 ? 1 : size_, huge ? kHugePage : kPage);
  const size_t reserve = huge ? body + kHugePage : body;
  void* p = ::mmap(nullptr, reserve, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    fail(ErrorCode::kIo, "cpu", "cannot map ", reserve, " bytes for a packed ", name(type),
         " weight: ", std::strerror(errno));
  }
  auto* base = static_cast<uint8_t*>(p);
  uint8_t* aligned = base;
  if (huge) {
    aligned = reinterpret_cast<uint8_t*>(round_up(reinterpret_cast<uintptr_t>(base), kHugePage));
    const size_t head = static_cast<size_t>(aligned - base);
    if (head > 0) ::munmap(base, head);
    const size_t tail = reserve - head - body;
    if (tail > 0) ::munmap(aligned + body, tail);
    // Advice only: without huge pages the weight still works, with more TLB misses.
    ::madvise(aligned, body, MADV_HUGEPAGE);
  }
  mapping_ = aligned;
  mapping_size_ = body;
  data_ = aligned;
}

PackedWeight::~PackedWeight() {
  if (mapping_) ::munmap(mapping_, mapping_size_);
}

}  // namespace af::cpu
