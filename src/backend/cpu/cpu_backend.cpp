#include "backend/cpu/cpu_backend.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "af/backend/quant.hpp"
#include "af/core/buffer.hpp"

#include "af/core/error.hpp"
#include "backend/cpu/backend_util.hpp"
#include "backend/cpu/kernels/attention_plan.hpp"
#include "backend/cpu/kernels/dense_packed.hpp"
#include "backend/cpu/quant/bf16_dot.hpp"
#include "backend/cpu/quant/packed.hpp"

namespace af::cpu {
namespace {

// Elementwise ops below this many floats run on the calling thread: waking a worker costs more.
constexpr int64_t kElementGrain = 16384;

// The K-quant packed kernels for the quantized table `isa` (by name: see packs_weights_).
quant::kpacked::GemmFn (*kpacked_gemm_for(const std::string& isa))(DType) {
  if (isa == "avx512vnni") return &quant::kpacked::avx512vnni_gemm;
  if (isa == "avxvnni") return &quant::kpacked::avxvnni_gemm;
  if (isa == "avx2" || isa == "avx512")
    return &quant::kpacked::avx2_gemm;  // AVX-512 without VNNI too
  return nullptr;
}

// The prefill (many activation rows) kernels of the K-quant packed layout, by the same names.
quant::kpacked::GemmFn (*kpacked_prefill_for(const std::string& isa))(DType) {
  if (isa == "avx512vnni") return &quant::kpacked::avx512vnni_prefill_gemm;
  if (isa == "avxvnni") return &quant::kpacked::avxvnni_prefill_gemm;
  if (isa == "avx2" || isa == "avx512") return &quant::kpacked::avx2_prefill_gemm;
  return nullptr;
}

}  // namespace

// The quantized kernels matching the dense table's ISA; AVX-512 CPUs with VNNI get those, AVX2
// CPUs with AVX-VNNI (and AVX-512 CPUs asked for "avx2" that have it) the 256-bit vpdpbusd.
const quant::QuantKernels& quant_kernels_for(const KernelTable& kernels) {
  const std::string isa = kernels.isa;
  if (isa == "avx512") {
    return cpu_has_avx512_vnni_bf16() ? quant::avx512vnni_quant_kernels()
                                      : quant::avx512_quant_kernels();
  }
  if (isa == "avx2") {
    return cpu_has_avx_vnni() ? quant::avxvnni_quant_kernels() : quant::avx2_quant_kernels();
  }
  return quant::scalar_quant_kernels();
}

CpuBackend::CpuBackend(const BackendOptions& options)
    : kernels_(kernel_table_for(options.isa)),
      quant_kernels_(quant_kernels_for(kernels_)),
      bf16_dot_(options.bf16_dot && std::string(kernels_.isa) == "avx512" &&
                cpu_has_avx512_vnni_bf16()),
      // By name, not by table address: asking for another ISA's table would build it, and its
      // initialiser is compiled for that ISA (an illegal instruction on a CPU without it).
      packs_weights_(std::string(quant_kernels_.isa) == "avx512vnni"),
      packs_dense_(std::string(kernels_.isa) == "avx512"),
      packed8_gemm_(std::string(quant_kernels_.isa) == "avxvnni" ? &quant::packed8::avxvnni_gemm
                    : std::string(quant_kernels_.isa) == "avx2"  ? &quant::packed8::avx2_gemm
                                                                 : nullptr),
      kpacked_gemm_(kpacked_gemm_for(quant_kernels_.isa)),
      kpacked_prefill_(kpacked_prefill_for(quant_kernels_.isa)),
      pool_(options.num_threads) {}

std::string CpuBackend::name() const { return std::string("cpu/") + kernels_.isa; }

void CpuBackend::rms_norm(const float* x, const float* w, int64_t rows, int64_t dim, float eps,
                          float* y) {
  check_nonneg(rows, "rms_norm", "rows");
  AF_CHECK(dim > 0, ErrorCode::kInvalidArgument, kComponent, "rms_norm: dim must be > 0, got ",
           dim);
  if (rows == 0) return;
  check_ptr(x, 1, "rms_norm", "x");
  check_ptr(w, 1, "rms_norm", "weight");
  check_ptr(y, 1, "rms_norm", "y");
  parallel_ranges(rows, ceil_div(kRowWork, dim), [&](int64_t r0, int64_t r1) {
    kernels_.rms_norm(x + r0 * dim, w, r1 - r0, dim, eps, y + r0 * dim);
  });
}

void CpuBackend::layer_norm(const float* x, const float* w, const float* b, int64_t rows,
                            int64_t dim, float eps, float* y) {
  check_nonneg(rows, "layer_norm", "rows");
  AF_CHECK(dim > 0, ErrorCode::kInvalidArgument, kComponent, "layer_norm: dim must be > 0, got ",
           dim);
  if (rows == 0) return;
  check_ptr(x, 1, "layer_norm", "x");
  check_ptr(w, 1, "layer_norm", "weight");
  check_ptr(y, 1, "layer_norm", "y");
  parallel_ranges(rows, ceil_div(kRowWork, dim), [&](int64_t r0, int64_t r1) {
    kernels_.layer_norm(x + r0 * dim, w, b, r1 - r0, dim, eps, y + r0 * dim);
  });
}

void CpuBackend::rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                      int64_t rotary_dim, const int32_t* positions, const float* inv_freq,
                      RopeLayout layout) {
  check_nonneg(n_tokens, "rope", "n_tokens");
  check_nonneg(n_heads, "rope", "n_heads");
  AF_CHECK(rotary_dim > 0 && rotary_dim % 2 == 0 && rotary_dim <= head_dim,
           ErrorCode::kInvalidArgument, kComponent,
           "rope: rotary_dim must be even and in (0, head_dim = ", head_dim, "], got ", rotary_dim);
  AF_CHECK(layout == RopeLayout::kHalf || layout == RopeLayout::kInterleaved,
           ErrorCode::kInvalidArgument, kComponent, "rope: unknown layout ",
           static_cast<int>(layout));
  if (n_tokens == 0 || n_heads == 0) return;
  check_ptr(x, 1, "rope", "x");
  check_ptr(positions, 1, "rope", "positions");
  check_ptr(inv_freq, 1, "rope", "inv_freq");
  const int64_t stride = n_heads * head_dim;
  parallel_ranges(n_tokens, ceil_div(kRowWork, stride), [&](int64_t t0, int64_t t1) {
    std::vector<float> scratch(static_cast<size_t>(3 * rotary_dim));
    kernels_.rope(x + t0 * stride, t1 - t0, n_heads, head_dim, rotary_dim, positions + t0, inv_freq,
                  layout, scratch.data());
  });
}

void CpuBackend::softmax(float* x, int64_t rows, int64_t n) {
  check_nonneg(rows, "softmax", "rows");
  check_nonneg(n, "softmax", "n");
  if (rows == 0 || n == 0) return;
  check_ptr(x, 1, "softmax", "x");
  parallel_ranges(rows, ceil_div(kRowWork, n),
                  [&](int64_t r0, int64_t r1) { kernels_.softmax(x + r0 * n, r1 - r0, n); });
}

void CpuBackend::silu(float* x, int64_t n) {
  check_nonneg(n, "silu", "n");
  check_ptr(x, n, "silu", "x");
  parallel_ranges(n, kElementGrain, [&](int64_t b, int64_t e) { kernels_.silu(x + b, e - b); });
}

void CpuBackend::silu_mul(float* gate, const float* up, int64_t n) {
  check_nonneg(n, "silu_mul", "n");
  check_ptr(gate, n, "silu_mul", "gate");
  check_ptr(up, n, "silu_mul", "up");
  parallel_ranges(n, kElementGrain,
                  [&](int64_t b, int64_t e) { kernels_.silu_mul(gate + b, up + b, e - b); });
}

void CpuBackend::gelu(float* x, int64_t n, GeluKind kind) {
  check_nonneg(n, "gelu", "n");
  check_ptr(x, n, "gelu", "x");
  AF_CHECK(kind == GeluKind::kErf || kind == GeluKind::kTanh || kind == GeluKind::kQuick,
           ErrorCode::kInvalidArgument, kComponent, "gelu: unknown kind ", static_cast<int>(kind));
  const UnaryFn fn = kind == GeluKind::kErf    ? kernels_.gelu_erf
                     : kind == GeluKind::kTanh ? kernels_.gelu_tanh
                                               : kernels_.gelu_quick;
  parallel_ranges(n, kElementGrain, [&](int64_t b, int64_t e) { fn(x + b, e - b); });
}

void CpuBackend::add_scaled(float* y, const float* x, float scale, int64_t n) {
  check_nonneg(n, "add_scaled", "n");
  check_ptr(y, n, "add_scaled", "y");
  check_ptr(x, n, "add_scaled", "x");
  parallel_ranges(n, kElementGrain,
                  [&](int64_t b, int64_t e) { kernels_.add_scaled(y + b, x + b, scale, e - b); });
}

void CpuBackend::scale(float* x, float scale, int64_t n) {
  check_nonneg(n, "scale", "n");
  check_ptr(x, n, "scale", "x");
  parallel_ranges(n, kElementGrain,
                  [&](int64_t b, int64_t e) { kernels_.scale(x + b, scale, e - b); });
}

void CpuBackend::attention(const float* q, const float* k, const float* v, int64_t n_tokens,
                           int64_t n_past, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                           float scale, float* out) {
  attention_impl(kernels_.attention, q, k, v, n_tokens, n_past, n_heads, n_kv_heads, head_dim,
                 scale, out);
}

void CpuBackend::attention_f16(const float* q, const uint16_t* k, const uint16_t* v,
                               int64_t n_tokens, int64_t n_past, int64_t n_heads,
                               int64_t n_kv_heads, int64_t head_dim, float scale, float* out) {
  attention_impl(kernels_.attention_f16, q, k, v, n_tokens, n_past, n_heads, n_kv_heads, head_dim,
                 scale, out);
}

namespace {

KvType kv_slot(DType type) {
  switch (type) {
    case DType::F32:
      return KvType::kF32;
    case DType::F16:
      return KvType::kF16;
    case DType::Q8_0:
      return KvType::kQ8_0;
    default:
      fail(ErrorCode::kUnsupported, kComponent, "attention: no KV cache of ", name(type),
           " elements (f32, f16, q8_0)");
  }
}

}  // namespace

void CpuBackend::attention_kv(const float* q, const KvCacheView& kv, int64_t n_tokens,
                              int64_t n_past, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                              float scale, float* out) {
  const AttentionKvFn fn =
      kernels_
          .attention_kv[static_cast<int>(kv_slot(kv.k_type))][static_cast<int>(kv_slot(kv.v_type))];
  attention_impl(fn, q, kv.k, kv.v, n_tokens, n_past, n_heads, n_kv_heads, head_dim, scale, out);
}

template <class T>
void CpuBackend::attention_impl(AttentionKernel<T> fn, const float* q, const T* k, const T* v,
                                int64_t n_tokens, int64_t n_past, int64_t n_heads,
                                int64_t n_kv_heads, int64_t head_dim, float scale, float* out) {
  check_nonneg(n_tokens, "attention", "n_tokens");
  check_nonneg(n_past, "attention", "n_past");
  AF_CHECK(n_heads > 0 && n_kv_heads > 0 && n_heads % n_kv_heads == 0, ErrorCode::kInvalidArgument,
           kComponent, "attention: n_heads (", n_heads,
           ") must be a positive multiple of n_kv_heads (", n_kv_heads, ")");
  AF_CHECK(head_dim > 0, ErrorCode::kInvalidArgument, kComponent,
           "attention: head_dim must be > 0, got ", head_dim);
  if (n_tokens == 0) return;
  check_ptr(q, 1, "attention", "q");
  check_ptr(k, 1, "attention", "k");
  check_ptr(v, 1, "attention", "v");
  check_ptr(out, 1, "attention", "out");
  const AttentionPlan plan =
      plan_attention(AttentionShape{n_tokens, n_past, n_heads, n_kv_heads, head_dim, scale});
  const int64_t rows = plan.rows_per_item();
  const int64_t n_items = plan.n_items();
  std::vector<float> acc(static_cast<size_t>(n_items * rows * head_dim));
  std::vector<float> stats(static_cast<size_t>(2 * n_items * rows));
  const AttentionPartials parts{acc.data(), stats.data(), stats.data() + n_items * rows};
  const bool split_keys = plan.n_key_chunks > 1;
  // Split keys run chunk by chunk (every KV head and token block of a chunk, then the next
  // chunk), so each thread streams one contiguous stretch of the cache.
  const int64_t per_chunk = n_items / plan.n_key_chunks;
  // Unsplit items (prefill) run latest token block first, the KV heads side by side: causal
  // rows see more keys the later they are, so the costliest items start first and the cheap
  // ones fill the threads' tails.
  const auto item_of = [&](int64_t n) {
    if (split_keys) return n % per_chunk * plan.n_key_chunks + n / per_chunk;
    const int64_t token_block = plan.n_token_blocks - 1 - n / n_kv_heads;
    return n % n_kv_heads * plan.n_token_blocks + token_block;
  };
  parallel_ranges(n_items, 1, [&](int64_t i0, int64_t i1) {
    std::vector<float> scratch(static_cast<size_t>(plan.scratch_floats()));
    for (int64_t n = i0; n < i1; ++n) {
      const int64_t i = item_of(n);
      run_attention_item(fn, plan, q, k, v, i, parts, scratch.data());
      // An unsplit item is a whole (KV head, token block): finish it while its state is hot.
      if (!split_keys) {
        merge_attention_items(plan, i / plan.n_token_blocks, i % plan.n_token_blocks, parts, out);
      }
    }
  });
  // Split keys come with few KV heads x token blocks (decode): a serial merge is cheaper than
  // waking the pool again.
  if (split_keys) {
    for (int64_t h = 0; h < n_kv_heads; ++h) {
      for (int64_t b = 0; b < plan.n_token_blocks; ++b) {
        merge_attention_items(plan, h, b, parts, out);
      }
    }
  }
}

void CpuBackend::embedding(const Tensor& table, const int32_t* ids, int64_t n, float* y) {
  AF_CHECK(table.shape().rank() == 2, ErrorCode::kInvalidArgument, kComponent,
           "embedding: table must be 2-D [vocab, dim], got shape ", table.shape().str());
  const bool quantized = quant::quant_slot(table.dtype()).has_value();
  const WeightType wt =
      quantized ? WeightType::kF32 : weight_type(table.dtype(), "embedding", "table");
  check_nonneg(n, "embedding", "n");
  if (n == 0) return;
  check_ptr(ids, 1, "embedding", "ids");
  const int64_t vocab = table.shape()[0];
  const int64_t dim = table.shape()[1];
  for (int64_t i = 0; i < n; ++i) {
    AF_CHECK(ids[i] >= 0 && ids[i] < vocab, ErrorCode::kInvalidArgument, kComponent,
             "embedding: id ", ids[i], " at index ", i, " is out of range for vocab size ", vocab);
  }
  if (dim == 0) return;
  check_ptr(y, 1, "embedding", "y");
  if (quantized) {
    const DType type = table.dtype();
    const int64_t block = info(type).block_size;
    AF_CHECK(dim % block == 0, ErrorCode::kInvalidArgument, kComponent,
             "embedding: ", af::name(type), " table row length ", dim,
             " is not a multiple of its block size ", block);
  }
  // A table in a model file is read through the file rather than the mapping: its pages may have
  // been released after repacking (a tied lm_head), and faulting rows back in would map their
  // neighbours too, growing resident memory with every new token.
  const auto* file = dynamic_cast<const MappedFile*>(table.buffer().get());
  const auto* base = reinterpret_cast<const std::byte*>(table.data());
  const int64_t rb = row_bytes(table.dtype(), dim);
  const ToF32Fn to_f32 = quantized ? nullptr : kernels_.to_f32[static_cast<int>(wt)];
  parallel_ranges(n, ceil_div(kRowWork, dim), [&](int64_t r0, int64_t r1) {
    std::vector<std::byte> row(file ? static_cast<size_t>(rb) : 0);
    for (int64_t r = r0; r < r1; ++r) {
      const std::byte* src = base + ids[r] * rb;
      if (file) {
        file->read(src, static_cast<size_t>(rb), row.data());
        src = row.data();
      }
      if (quantized) {
        af::quant::dequantize_row(table.dtype(), src, y + r * dim, dim);
      } else {
        to_f32(src, dim, y + r * dim);
      }
    }
  });
}

std::unique_ptr<Backend> make_cpu_backend(const BackendOptions& options) {
  AF_CHECK(options.device.kind == DeviceKind::kCpu, ErrorCode::kInvalidArgument, kComponent,
           "make_cpu_backend called for device ", options.device.str());
  return std::make_unique<CpuBackend>(options);
}

}  // namespace af::cpu
