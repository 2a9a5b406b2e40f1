#include "backend/cpu/cpu_backend.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "af/backend/quant.hpp"
#include "af/core/buffer.hpp"

#include "af/core/error.hpp"
#include "backend/cpu/kernels/attention_plan.hpp"
#include "backend/cpu/quant/bf16_dot.hpp"
#include "backend/cpu/quant/packed.hpp"

namespace af::cpu {
namespace {

constexpr const char* kComponent = "cpu";
// Elementwise ops below this many floats run on the calling thread: waking a worker costs more.
constexpr int64_t kElementGrain = 16384;
// Roughly the floats of work one task should get for row-wise ops.
constexpr int64_t kRowWork = 16384;
// Matmul column chunk; a multiple of the tile widths so chunk edges fall on tile edges (for
// speed only: any split gives the same bits).
constexpr int64_t kColumnGrain = 16;
// Quantized matmul column chunk: a multiple of every tile width.
constexpr int64_t kQuantColumnGrain = 32;
// Packed matmul tasks: row groups per task (decode), and row groups x activation rows per task
// (prefill: about 130 KiB of Q4_0 weight for k = 4864 stays in L2 while 64 rows pass).
constexpr int64_t kDecodeGroups = 4;
constexpr int64_t kPrefillGroups = 6;
constexpr int64_t kPrefillRows = 64;
// From this many activation rows on, an unprepared weight is packed tile by tile during the
// matmul. Measured (1 thread, Q4_0/Q8_0 4864x896 and 896x4864): already at 2 rows the packed
// kernels with their packing take 0.55-0.95x the time of the legacy tiles, at 16 rows 0.25x.
constexpr int64_t kPackOnTheFlyMinRows = 2;
// Packed scratch per task: with the activation rows passing over it, it should stay in L2.
constexpr int64_t kPackedTileBytes = 192 << 10;
// Rows below which a row chunk is not worth packing a tile again for.
constexpr int64_t kMinRowChunk = 16;
// BF16 dot products: weight groups per task (a multiple of the kernel's 4-group tile), the
// activation rows of its tile (row chunks are multiples of it), and the rows from which an
// unprepared weight is packed tile by tile rather than used row by row.
constexpr int64_t kBf16TileGroups = 4;
constexpr int64_t kBf16TileRows = 6;
constexpr int64_t kBf16PackOnTheFlyMinRows = 4;
// Matmuls with fewer multiply-adds than this run on one thread.
constexpr int64_t kMinParallelMacs = 1 << 16;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

void check_ptr(const void* p, int64_t count, const char* op, const char* what) {
  AF_CHECK(count == 0 || p != nullptr, ErrorCode::kInvalidArgument, kComponent, op, ": ", what,
           " is null");
}

void check_nonneg(int64_t v, const char* op, const char* what) {
  AF_CHECK(v >= 0, ErrorCode::kInvalidArgument, kComponent, op, ": ", what, " must be >= 0, got ",
           v);
}

WeightType weight_type(DType dtype, const char* op, const char* what) {
  switch (dtype) {
    case DType::F32:
      return WeightType::kF32;
    case DType::F16:
      return WeightType::kF16;
    case DType::BF16:
      return WeightType::kBF16;
    default:
      fail(ErrorCode::kUnsupported, kComponent, op, ": ", what, " dtype ", name(dtype),
           " is not supported (expected f32, f16 or bf16)");
  }
}

}  // namespace

// The quantized kernels matching the dense table's ISA; AVX-512 CPUs with VNNI get those.
const quant::QuantKernels& quant_kernels_for(const KernelTable& kernels) {
  const std::string isa = kernels.isa;
  if (isa == "avx512") {
    return cpu_has_avx512_vnni_bf16() ? quant::avx512vnni_quant_kernels()
                                      : quant::avx512_quant_kernels();
  }
  if (isa == "avx2") return quant::avx2_quant_kernels();
  return quant::scalar_quant_kernels();
}

CpuBackend::CpuBackend(const BackendOptions& options)
    : kernels_(kernel_table_for(options.isa)),
      quant_kernels_(quant_kernels_for(kernels_)),
      bf16_dot_(options.bf16_dot && std::string(kernels_.isa) == "avx512" &&
                cpu_has_avx512_vnni_bf16()),
      packs_weights_(&quant_kernels_ == &quant::avx512vnni_quant_kernels()),
      pool_(options.num_threads) {}

std::string CpuBackend::name() const { return std::string("cpu/") + kernels_.isa; }

template <class Fn>
void CpuBackend::parallel_ranges(int64_t n_items, int64_t grain, Fn&& fn) {
  if (n_items <= 0) return;
  if (grain < 1) grain = 1;
  pool_.parallel_for(ceil_div(n_items, grain), [&](int64_t tb, int64_t te) {
    const int64_t end = te * grain < n_items ? te * grain : n_items;
    fn(tb * grain, end);
  });
}

namespace {

// The checks matmul and prepare_matmul_weight share: a 2-D weight of whole blocks.
void check_matmul_weight(const Tensor& w, const char* op) {
  AF_CHECK(w.shape().rank() == 2, ErrorCode::kInvalidArgument, kComponent, op,
           ": weight must be 2-D [n, k], got shape ", w.shape().str());
  if (quant::quant_slot(w.dtype())) {
    const int64_t block = info(w.dtype()).block_size;
    AF_CHECK(w.shape()[1] % block == 0, ErrorCode::kInvalidArgument, kComponent, op, ": ",
             af::name(w.dtype()), " weight row length ", w.shape()[1],
             " is not a multiple of its block size ", block);
  }
}

}  // namespace

std::shared_ptr<const PreparedWeight> CpuBackend::prepare_matmul_weight(const Tensor& w) {
  check_matmul_weight(w, "prepare_matmul_weight");
  if (!quant::quant_slot(w.dtype())) {
    weight_type(w.dtype(), "prepare_matmul_weight", "weight");  // throws for unusable dtypes
  }
  const int64_t n = w.shape()[0];
  const int64_t k = w.shape()[1];
  if (bf16_dot_ && w.dtype() == DType::BF16 && n > 0 && k > 0) return prepare_bf16(w);
  if (!packs_weights_ || !quant::packed::is_packable(w.dtype()) || n == 0 || k == 0) {
    return nullptr;
  }
  AF_CHECK(w.data() != nullptr, ErrorCode::kInvalidArgument, kComponent,
           "prepare_matmul_weight: weight has no data");
  auto packed = std::make_shared<PackedWeight>(w.dtype(), n, k, w.data());
  const auto* src = reinterpret_cast<const uint8_t*>(w.data());
  uint8_t* dst = packed->mutable_data();
  // About 256 KiB of weight per task: large enough to amortise the wake-up, small enough to
  // share. The file's copy of each packed range leaves memory right away, so the peak stays
  // near the file size.
  const int64_t group_bytes = k / 32 * quant::packed::group_block_bytes(w.dtype());
  const quant::packed::PackFn pack = quant::packed::avx512vnni_pack(w.dtype());
  const auto* file = dynamic_cast<const MappedFile*>(w.buffer().get());
  const int64_t src_group_bytes = quant::packed::kGroupRows * row_bytes(w.dtype(), k);
  parallel_ranges(quant::packed::group_count(n), std::max<int64_t>(1, (256 << 10) / group_bytes),
                  [&](int64_t g0, int64_t g1) {
                    pack(w.dtype(), src, n, k, g0, g1, dst + g0 * group_bytes);
                    if (file) {
                      const int64_t end =
                          std::min<int64_t>(g1 * src_group_bytes, static_cast<int64_t>(w.nbytes()));
                      file->release_pages(w.data() + g0 * src_group_bytes,
                                          static_cast<size_t>(end - g0 * src_group_bytes));
                    }
                  });
  return packed;
}

std::shared_ptr<const PreparedWeight> CpuBackend::prepare_bf16(const Tensor& w) {
  const int64_t n = w.shape()[0];
  const int64_t k = w.shape()[1];
  AF_CHECK(w.data() != nullptr, ErrorCode::kInvalidArgument, kComponent,
           "prepare_matmul_weight: weight has no data");
  auto packed = std::make_shared<PackedWeight>(DType::BF16, n, k, w.data());
  const auto* src = reinterpret_cast<const uint16_t*>(w.data());
  auto* dst = reinterpret_cast<uint32_t*>(packed->mutable_data());
  const auto* file = dynamic_cast<const MappedFile*>(w.buffer().get());
  const int64_t pairs = quant::bf16_pairs(k);
  const int64_t group_words = pairs * quant::kBf16GroupRows;
  const int64_t src_group_bytes = quant::kBf16GroupRows * k * 2;
  // As for the int8 layouts: ~256 KiB per task, the file's pages released as they are packed.
  parallel_ranges(quant::bf16_groups(n), std::max<int64_t>(1, (256 << 10) / (group_words * 4)),
                  [&](int64_t g0, int64_t g1) {
                    quant::bf16_pack_avx512(src, n, k, g0, g1, 0, pairs, dst + g0 * group_words);
                    if (file) {
                      const int64_t end =
                          std::min<int64_t>(g1 * src_group_bytes, static_cast<int64_t>(w.nbytes()));
                      file->release_pages(w.data() + g0 * src_group_bytes,
                                          static_cast<size_t>(end - g0 * src_group_bytes));
                    }
                  });
  return packed;
}

void CpuBackend::matmul(const float* x, int64_t m, const Tensor& w, const float* bias, float* y,
                        const PreparedWeight* prepared) {
  // All argument checks happen here, once; the paths below only compute.
  check_matmul_weight(w, "matmul");
  const auto slot = quant::quant_slot(w.dtype());
  const bool bf16_dot = !slot && bf16_dot_ && w.dtype() == DType::BF16;
  const WeightType wt =
      slot || bf16_dot ? WeightType::kF32 : weight_type(w.dtype(), "matmul", "weight");
  check_nonneg(m, "matmul", "m");
  const int64_t n = w.shape()[0];
  const int64_t k = w.shape()[1];
  const auto* packed = dynamic_cast<const PackedWeight*>(prepared);
  AF_CHECK(prepared == nullptr ||
               (packed && packed->source() == w.data() && packed->type() == w.dtype() &&
                packed->rows() == n && packed->cols() == k),
           ErrorCode::kInvalidArgument, kComponent,
           "matmul: the prepared weight was not made by prepare_matmul_weight from this ",
           af::name(w.dtype()), " weight of shape ", w.shape().str());
  if (m == 0 || n == 0) return;
  check_ptr(y, 1, "matmul", "y");
  check_ptr(x, k, "matmul", "x");
  AF_CHECK(k == 0 || w.data() != nullptr, ErrorCode::kInvalidArgument, kComponent,
           "matmul: weight has no data");
  if (bf16_dot) {
    matmul_bf16_dot(x, m, w, packed && packed->type() == DType::BF16 ? packed : nullptr, bias, y);
    return;
  }
  // A backend without the packed kernels (another ISA, or bf16 dot products off) uses the
  // weight itself.
  if (packed && packs_weights_ && packed->type() != DType::BF16) {
    matmul_packed(x, m, packed->type(), n, k, packed->data(), nullptr, bias, y);
    return;
  }
  if (slot && packs_weights_ && m >= kPackOnTheFlyMinRows && k > 0 &&
      quant::packed::is_packable(w.dtype())) {
    matmul_packed(x, m, w.dtype(), n, k, nullptr, reinterpret_cast<const uint8_t*>(w.data()), bias,
                  y);
    return;
  }
  if (slot) {
    matmul_quantized(x, m, w, *slot, bias, y);
    return;
  }
  const MatmulFn fn = kernels_.matmul[static_cast<int>(wt)];
  const void* wd = w.data();
  const int64_t macs = m * n * k;
  const int64_t grain = macs < kMinParallelMacs ? n : kColumnGrain;
  parallel_ranges(n, grain, [&](int64_t j0, int64_t j1) { fn(x, m, k, wd, bias, n, j0, j1, y); });
}

void CpuBackend::matmul_quantized(const float* x, int64_t m, const Tensor& w, quant::QuantSlot slot,
                                  const float* bias, float* y) {
  const int64_t n = w.shape()[0];
  const int64_t k = w.shape()[1];
  const DType act_type = quant::vec_dot_type(w.dtype());
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) y[i * n + j] = bias ? bias[j] : 0.f;
    }
    return;
  }
  const int64_t w_row = row_bytes(w.dtype(), k);
  const int64_t a_row = row_bytes(act_type, k);
  // Activations are quantized once per call, then every weight tile reuses them.
  std::vector<uint8_t> act(static_cast<size_t>(m * a_row));
  const quant::QuantizeActFn quantize =
      act_type == DType::Q8_K ? quant_kernels_.quantize_q8_k : quant_kernels_.quantize_q8_0;
  parallel_ranges(m, std::max<int64_t>(1, kRowWork / k), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) quantize(x + r * k, act.data() + r * a_row, k);
  });
  const quant::QuantDotFn dot = quant_kernels_.dot[slot];
  const auto* wd = reinterpret_cast<const uint8_t*>(w.data());
  // A column chunk's weight rows stay in cache while every activation row passes over them.
  const int64_t grain = m * n * k < kMinParallelMacs ? n : kQuantColumnGrain;
  parallel_ranges(n, grain, [&](int64_t j0, int64_t j1) {
    dot(k, wd + j0 * w_row, w_row, j1 - j0, act.data(), a_row, m, y + j0, n);
    if (bias) {
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = j0; j < j1; ++j) y[i * n + j] += bias[j];
      }
    }
  });
}

void CpuBackend::matmul_packed(const float* x, int64_t m, DType type, int64_t n, int64_t k,
                               const uint8_t* prepacked, const uint8_t* gguf, const float* bias,
                               float* y) {
  namespace pk = quant::packed;
  const int64_t nb = k / 32;
  // Activations: quantized to Q8_0 as for the unpacked path, then split for the kernel.
  std::vector<int8_t> qs(static_cast<size_t>(m * k));
  std::vector<float> d(static_cast<size_t>(m * nb)), asum(d.size());
  std::vector<int32_t> offset(d.size());
  const int64_t a_row = row_bytes(DType::Q8_0, k);
  parallel_ranges(m, std::max<int64_t>(1, kRowWork / k), [&](int64_t r0, int64_t r1) {
    std::vector<uint8_t> row(static_cast<size_t>(a_row));
    for (int64_t r = r0; r < r1; ++r) {
      quant_kernels_.quantize_q8_0(x + r * k, row.data(), k);
      pk::split_activation_row(type, row.data(), k, qs.data() + r * k, d.data() + r * nb,
                               offset.data() + r * nb, asum.data() + r * nb);
    }
  });
  const pk::Activations acts{qs.data(), d.data(), offset.data(), asum.data(), k};
  const pk::PackedGemmFn gemm = pk::avx512vnni_packed_gemm(type);
  const pk::PackFn pack = pk::avx512vnni_pack(type);
  const int64_t groups = pk::group_count(n);
  const int64_t group_bytes = nb * pk::group_block_bytes(type);
  if (!prepacked) {
    // A task packs a tile of groups into its own scratch (kept in L2) and runs a chunk of rows
    // over it. Rows are split only when there are too few tiles to keep every thread busy
    // (each row chunk then packs the tile again).
    const int64_t threads = pool_.num_threads();
    int64_t tile_groups =
        std::min<int64_t>(kPrefillGroups, std::max<int64_t>(3, kPackedTileBytes / group_bytes));
    if (m * n * k < kMinParallelMacs) tile_groups = groups;
    const int64_t n_tiles = ceil_div(groups, tile_groups);
    const int64_t n_chunks = std::clamp<int64_t>(ceil_div(4 * threads, n_tiles), 1,
                                                 std::max<int64_t>(1, m / kMinRowChunk));
    const int64_t row_chunk = ceil_div(ceil_div(m, n_chunks), 4) * 4;
    const int64_t n_row_chunks = ceil_div(m, row_chunk);
    parallel_ranges(n_tiles * n_row_chunks, 1, [&](int64_t t0, int64_t t1) {
      // Uninitialised: pack() writes every byte the kernel reads.
      const auto scratch =
          std::make_unique_for_overwrite<uint8_t[]>(static_cast<size_t>(tile_groups * group_bytes));
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t g0 = t / n_row_chunks * tile_groups;
        const int64_t g1 = std::min(g0 + tile_groups, groups);
        const int64_t i0 = t % n_row_chunks * row_chunk;
        pack(type, gguf, n, k, g0, g1, scratch.get());
        gemm(scratch.get(), g0, g1, n, acts, i0, std::min(i0 + row_chunk, m), bias, y, n);
      }
    });
    return;
  }
  // Tasks are (group tile, row chunk) pairs: a group tile's weights stay in L2 while the row
  // chunk's activations pass over them. Decode splits the groups finely instead.
  int64_t tile_groups = m == 1 ? kDecodeGroups : kPrefillGroups;
  const int64_t row_chunk = m == 1 ? 1 : kPrefillRows;
  if (m * n * k < kMinParallelMacs) tile_groups = groups;
  const int64_t n_tiles = ceil_div(groups, tile_groups);
  const int64_t n_chunks = ceil_div(m, row_chunk);
  parallel_ranges(n_tiles * n_chunks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t g0 = t / n_chunks * tile_groups;
      const int64_t i0 = t % n_chunks * row_chunk;
      gemm(prepacked + g0 * group_bytes, g0, std::min(g0 + tile_groups, groups), n, acts, i0,
           std::min(i0 + row_chunk, m), bias, y, n);
    }
  });
}

void CpuBackend::matmul_bf16_dot(const float* x, int64_t m, const Tensor& w,
                                 const PackedWeight* packed, const float* bias, float* y) {
  const int64_t n = w.shape()[0];
  const int64_t k = w.shape()[1];
  const auto* wd = reinterpret_cast<const uint16_t*>(w.data());
  const bool use_packed = packed || m >= kBf16PackOnTheFlyMinRows;
  // The packed kernels read activation pairs: rows padded to an even length with a zero.
  const int64_t ldx = use_packed ? 2 * quant::bf16_pairs(k) : k;
  std::vector<uint16_t> xb(static_cast<size_t>(m * ldx), 0);
  parallel_ranges(m, std::max<int64_t>(1, kRowWork / std::max<int64_t>(k, 1)),
                  [&](int64_t r0, int64_t r1) {
                    for (int64_t r = r0; r < r1; ++r) {
                      quant::bf16_round_row(x + r * k, xb.data() + r * ldx, k);
                    }
                  });
  if (!use_packed) {
    const int64_t grain = m * n * k < kMinParallelMacs ? n : kColumnGrain;
    parallel_ranges(n, grain, [&](int64_t j0, int64_t j1) {
      quant::bf16_dot_rows(k, wd, j0, j1, xb.data(), m, y, n);
      if (bias) {
        for (int64_t i = 0; i < m; ++i) {
          for (int64_t j = j0; j < j1; ++j) y[i * n + j] += bias[j];
        }
      }
    });
    return;
  }
  // Tasks are (group tile, row chunk) pairs, as for the int8 packed kernels.
  const int64_t groups = quant::bf16_groups(n);
  const int64_t tile_groups = m * n * k < kMinParallelMacs ? groups : kBf16TileGroups;
  const int64_t n_tiles = ceil_div(groups, tile_groups);
  const int64_t n_chunks = std::clamp<int64_t>(ceil_div(4 * pool_.num_threads(), n_tiles), 1,
                                               std::max<int64_t>(1, m / kMinRowChunk));
  const int64_t row_chunk = ceil_div(ceil_div(m, n_chunks), kBf16TileRows) * kBf16TileRows;
  const int64_t n_row_chunks = ceil_div(m, row_chunk);
  const int64_t group_words = quant::bf16_pairs(k) * quant::kBf16GroupRows;
  const auto* pw = packed ? reinterpret_cast<const uint32_t*>(packed->data()) : nullptr;
  parallel_ranges(n_tiles * n_row_chunks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t g0 = t / n_row_chunks * tile_groups;
      const int64_t i0 = t % n_row_chunks * row_chunk;
      quant::bf16_packed_gemm(pw ? pw + g0 * group_words : nullptr, wd, n, k, g0,
                              std::min(g0 + tile_groups, groups), xb.data(), ldx, i0,
                              std::min(i0 + row_chunk, m), bias, y, n);
    }
  });
}

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
  AF_CHECK(kind == GeluKind::kErf || kind == GeluKind::kTanh, ErrorCode::kInvalidArgument,
           kComponent, "gelu: unknown kind ", static_cast<int>(kind));
  const UnaryFn fn = kind == GeluKind::kErf ? kernels_.gelu_erf : kernels_.gelu_tanh;
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
  const AttentionFn fn = kernels_.attention;
  const bool split_keys = plan.n_key_chunks > 1;
  // Split keys run chunk by chunk (every KV head and token block of a chunk, then the next
  // chunk), so each thread streams one contiguous stretch of the cache.
  const int64_t per_chunk = n_items / plan.n_key_chunks;
  parallel_ranges(n_items, 1, [&](int64_t i0, int64_t i1) {
    std::vector<float> scratch(static_cast<size_t>(plan.scratch_floats()));
    for (int64_t n = i0; n < i1; ++n) {
      const int64_t i = split_keys ? n % per_chunk * plan.n_key_chunks + n / per_chunk : n;
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
    const auto* qbase = reinterpret_cast<const uint8_t*>(table.data());
    const int64_t qrow = row_bytes(type, dim);
    parallel_ranges(n, ceil_div(kRowWork, dim), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        af::quant::dequantize_row(type, qbase + ids[r] * qrow, y + r * dim, dim);
      }
    });
    return;
  }
  const ToF32Fn fn = kernels_.to_f32[static_cast<int>(wt)];
  const auto* base = reinterpret_cast<const unsigned char*>(table.data());
  const int64_t row_bytes = dim * (wt == WeightType::kF32 ? 4 : 2);
  parallel_ranges(n, ceil_div(kRowWork, dim), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) fn(base + ids[r] * row_bytes, dim, y + r * dim);
  });
}

std::unique_ptr<Backend> make_cpu_backend(const BackendOptions& options) {
  AF_CHECK(options.device.kind == DeviceKind::kCpu, ErrorCode::kInvalidArgument, kComponent,
           "make_cpu_backend called for device ", options.device.str());
  return std::make_unique<CpuBackend>(options);
}

}  // namespace af::cpu
