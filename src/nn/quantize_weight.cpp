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

bool is_dense_float(DType type) {
  return type == DType::F32 || type == DType::F16 || type == DType::BF16;
}

void f32_to_row(const float* x, int64_t k, DType type, std::byte* dst) {
  if (type == DType::F32) {
    std::copy(x, x + k, reinterpret_cast<float*>(dst));
    return;
  }
  auto* out = reinterpret_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < k; ++i)
    out[i] = type == DType::F16 ? f32_to_f16(x[i]) : f32_to_bf16(x[i]);
}

}  // namespace

Tensor quantize_weight(const Tensor& w, DType type, const std::string& what) {
  AF_CHECK(is_dense_float(type) || quant::is_supported(type), ErrorCode::kInvalidArgument, "nn",
           what, ": cannot convert weights to ", name(type));
  if (!is_dense_float(w.dtype()) || w.dtype() == type) return w;
  AF_CHECK(w.shape().rank() == 2, ErrorCode::kInvalidArgument, "nn", what,
           ": only 2-D weights are converted, got shape ", w.shape().str());
  const int64_t rows = w.shape()[0];
  const int64_t k = w.shape()[1];
  const std::optional<DType> fits = quant::load_type(type, k);
  if (!fits) return w;
  const DType target = *fits;
  Tensor out = Tensor::zeros(target, w.shape());
  const int64_t out_row = row_bytes(target, k);
  std::byte* dst = out.mutable_data();
  const int64_t n_threads = std::clamp<int64_t>(std::thread::hardware_concurrency(), 1, rows);
  std::vector<std::thread> workers;
  auto work = [&](int64_t t) {
    std::vector<float> buf(static_cast<size_t>(k));
    for (int64_t r = rows * t / n_threads; r < rows * (t + 1) / n_threads; ++r) {
      row_to_f32(w, r, k, buf.data());
      if (is_dense_float(target)) {
        f32_to_row(buf.data(), k, target, dst + r * out_row);
      } else {
        quant::quantize_row(target, buf.data(), dst + r * out_row, k);
      }
    }
  };
  for (int64_t t = 1; t < n_threads; ++t) workers.emplace_back(work, t);
  work(0);
  for (auto& th : workers) th.join();
  release_file_pages(w);
  return out;
}

}  // namespace af::nn
