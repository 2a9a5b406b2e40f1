#include "nn/quantize_weight.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

#include "af/backend/quant.hpp"
#include "af/core/buffer.hpp"
#include "af/core/error.hpp"
#include "af/core/half.hpp"

namespace af::nn {
namespace {

std::optional<DType> fallback(DType type) {
  switch (type) {
    case DType::Q4_K:
      return DType::Q5_0;
    case DType::Q5_K:
      return DType::Q5_1;
    case DType::Q6_K:
      return DType::Q8_0;
    case DType::Q2_K:
    case DType::Q3_K:
      return DType::Q4_0;
    default:
      return std::nullopt;
  }
}

void row_to_f32(const Tensor& w, int64_t row, int64_t k, float* out) {
  switch (w.dtype()) {
    case DType::F32: {
      const float* src = w.as<float>() + row * k;
      std::copy(src, src + k, out);
      return;
    }
    case DType::F16: {
      const uint16_t* src = w.as<uint16_t>() + row * k;
      for (int64_t i = 0; i < k; ++i) out[i] = f16_to_f32(src[i]);
      return;
    }
    case DType::BF16: {
      const uint16_t* src = w.as<uint16_t>() + row * k;
      for (int64_t i = 0; i < k; ++i) out[i] = bf16_to_f32(src[i]);
      return;
    }
    default:
      break;
  }
  fail(ErrorCode::kUnsupported, "nn", "quantize_weight: cannot read ", name(w.dtype()));
}

// Tells the kernel the source pages of a file mapping are no longer needed, so only the
// quantized copy stays resident (the mapping is read-only and private: pages come back from
// the file if anything reads them again). Owned heap buffers are left alone.
void release_file_pages(const Tensor& w) {
  if (dynamic_cast<const MappedFile*>(w.buffer().get()) == nullptr) return;
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(w.data());
  const uintptr_t first = (begin + page - 1) / page * page;
  const uintptr_t last = (begin + w.nbytes()) / page * page;
  if (last > first) {
    madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
  }
}

}  // namespace

Tensor quantize_weight(const Tensor& w, DType type, const std::string& what) {
  AF_CHECK(quant::is_supported(type) || type == DType::BF16, ErrorCode::kInvalidArgument, "nn",
           what, ": cannot quantize to ", name(type));
  if (w.dtype() != DType::F32 && w.dtype() != DType::F16 && w.dtype() != DType::BF16) return w;
  AF_CHECK(w.shape().rank() == 2, ErrorCode::kInvalidArgument, "nn", what,
           ": only 2-D weights are quantized, got shape ", w.shape().str());
  const int64_t rows = w.shape()[0];
  const int64_t k = w.shape()[1];
  if (type == DType::BF16) {
    if (w.dtype() == DType::BF16) return w;
    Tensor out = Tensor::zeros(DType::BF16, w.shape());
    auto* dst = reinterpret_cast<uint16_t*>(out.mutable_data());
    std::vector<float> buf(static_cast<size_t>(k));
    for (int64_t r = 0; r < rows; ++r) {
      row_to_f32(w, r, k, buf.data());
      for (int64_t i = 0; i < k; ++i) dst[r * k + i] = f32_to_bf16(buf[i]);
    }
    release_file_pages(w);
    return out;
  }
  DType target = type;
  if (k % info(target).block_size != 0) {
    const auto alt = fallback(target);
    if (!alt || k % info(*alt).block_size != 0) return w;
    target = *alt;
  }
  Tensor out = Tensor::zeros(target, w.shape());
  const int64_t out_row = row_bytes(target, k);
  std::byte* dst = out.mutable_data();
  const int64_t n_threads = std::clamp<int64_t>(std::thread::hardware_concurrency(), 1, rows);
  std::vector<std::thread> workers;
  auto work = [&](int64_t t) {
    std::vector<float> buf(static_cast<size_t>(k));
    for (int64_t r = rows * t / n_threads; r < rows * (t + 1) / n_threads; ++r) {
      row_to_f32(w, r, k, buf.data());
      quant::quantize_row(target, buf.data(), dst + r * out_row, k);
    }
  };
  for (int64_t t = 1; t < n_threads; ++t) workers.emplace_back(work, t);
  work(0);
  for (auto& th : workers) th.join();
  release_file_pages(w);
  return out;
}

}  // namespace af::nn
