// CpuBackend's matmuls: weight preparation (repacking at load), and each product planned as
// tasks over x prepared once per group (matmul_group), run in one parallel pass.
#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "af/backend/quant.hpp"
#include "af/core/buffer.hpp"
#include "af/core/error.hpp"
#include "backend/cpu/backend_util.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/kernels/dense_packed.hpp"
#include "backend/cpu/quant/bf16_dot.hpp"
#include "backend/cpu/quant/kpacked.hpp"
#include "backend/cpu/quant/packed.hpp"

namespace af::cpu {
namespace {

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
// The same for the 8-row layout of CPUs without AVX-512 (quant/packed8.hpp), whose weights are
// not repacked at load: their decode streams the GGUF rows as fast.
constexpr int64_t kPack8MinRows = 4;
// From this many activation rows on, K-quant packed weights are unpacked tile by tile for the
// GGUF-layout tile kernels (whose decoded blocks serve more rows than the packed kernels' 4).
// Measured (1 thread, busy VM, Q4_K 8960x1536, m = 128): 12.8 ms CPU against 16.7 ms.
constexpr int64_t kKPackedTileMinRows = 8;
// From this many activation rows on, AVX-512 VNNI runs K-quant packed weights through the panel
// prefill kernel (kpacked_prefill_avx512vnni.cpp), in tiles of this many groups (a multiple of
// its two-group panels).
constexpr int64_t kKPackedPanelMinRows = 8;
constexpr int64_t kKPackedPanelGroups = 2;
// Packed scratch per task: with the activation rows passing over it, it should stay in L2.
constexpr int64_t kPackedTileBytes = 192 << 10;
// Rows below which a row chunk is not worth packing a tile again for.
constexpr int64_t kMinRowChunk = 16;
// BF16 dot products: weight groups per task (a multiple of the kernel's 4-group tile) and the
// activation rows of its tile (row chunks are multiples of it).
constexpr int64_t kBf16TileGroups = 4;
constexpr int64_t kBf16TileRows = 6;
// Dense packed matmuls (kernels/dense_packed.hpp): groups per task and the kernel's tile rows.
constexpr int64_t kDenseTileGroups = 4;
constexpr int64_t kDenseTileRows = 6;
// Matmuls with fewer multiply-adds than this run on one thread.
constexpr int64_t kMinParallelMacs = 1 << 16;

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
  using Layout = PackedWeight::Layout;
  Layout layout;
  if (bf16_dot_ && w.dtype() == DType::BF16) {
    layout = Layout::kBf16Pairs;
  } else if (packs_dense_ && !quant::quant_slot(w.dtype())) {
    layout = Layout::kDense;
  } else if (packs_weights_ && quant::packed::is_packable(w.dtype())) {
    layout = Layout::kInt8Blocks;
  } else if (kpacked_gemm_ && quant::kpacked::is_packable(w.dtype())) {
    layout = Layout::kKQuantBlocks;
  } else {
    return nullptr;
  }
  if (n == 0 || k == 0) return nullptr;
  AF_CHECK(w.data() != nullptr, ErrorCode::kInvalidArgument, kComponent,
           "prepare_matmul_weight: weight has no data");
  auto packed = std::make_shared<PackedWeight>(w.dtype(), layout, n, k, w.data());
  uint8_t* dst = packed->mutable_data();
  // Every layout packs groups of 16 rows; pack(g0, g1) writes groups [g0, g1) at their place.
  static_assert(quant::kBf16GroupRows == quant::packed::kGroupRows &&
                dense::kGroupRows == quant::packed::kGroupRows &&
                quant::kpacked::kGroupRows == quant::packed::kGroupRows);
  int64_t groups = 0, group_bytes = 0;
  std::function<void(int64_t, int64_t)> pack;
  switch (layout) {
    case Layout::kBf16Pairs: {
      const int64_t pairs = quant::bf16_pairs(k);
      groups = quant::bf16_groups(n);
      group_bytes = pairs * quant::kBf16GroupRows * 4;
      pack = [&, pairs](int64_t g0, int64_t g1) {
        quant::bf16_pack_avx512(reinterpret_cast<const uint16_t*>(w.data()), n, k, g0, g1, 0, pairs,
                                reinterpret_cast<uint32_t*>(dst + g0 * group_bytes));
      };
      break;
    }
    case Layout::kDense: {
      const WeightType wt = weight_type(w.dtype(), "prepare_matmul_weight", "weight");
      const int64_t chunks = dense::group_chunks(wt, k);
      groups = dense::group_count(n);
      group_bytes = chunks * 64;
      pack = [&, wt, chunks](int64_t g0, int64_t g1) {
        dense::pack_avx512(wt, w.data(), n, k, g0, g1, 0, chunks, dst + g0 * group_bytes);
      };
      break;
    }
    case Layout::kInt8Blocks: {
      const quant::packed::PackFn fn = quant::packed::avx512vnni_pack(w.dtype());
      groups = quant::packed::group_count(n);
      group_bytes = k / 32 * quant::packed::group_block_bytes(w.dtype());
      pack = [&, fn](int64_t g0, int64_t g1) {
        fn(w.dtype(), reinterpret_cast<const uint8_t*>(w.data()), n, k, g0, g1,
           dst + g0 * group_bytes);
      };
      break;
    }
    case Layout::kKQuantBlocks: {
      groups = quant::kpacked::group_count(n);
      group_bytes = k / 256 * quant::kpacked::group_block_bytes(w.dtype());
      pack = [&](int64_t g0, int64_t g1) {
        quant::kpacked::pack_groups(w.dtype(), reinterpret_cast<const uint8_t*>(w.data()), n, k, g0,
                                    g1, dst + g0 * group_bytes);
      };
      break;
    }
  }
  // About 256 KiB of packed weight per task: large enough to amortise the wake-up, small enough
  // to share. The file's copy of each packed range leaves memory right away, so the peak stays
  // near the file size.
  const auto* file = dynamic_cast<const MappedFile*>(w.buffer().get());
  const int64_t src_group_bytes = quant::packed::kGroupRows * row_bytes(w.dtype(), k);
  parallel_ranges(groups, std::max<int64_t>(1, (256 << 10) / group_bytes),
                  [&](int64_t g0, int64_t g1) {
                    pack(g0, g1);
                    if (file) {
                      const int64_t end =
                          std::min<int64_t>(g1 * src_group_bytes, static_cast<int64_t>(w.nbytes()));
                      file->release_pages(w.data() + g0 * src_group_bytes,
                                          static_cast<size_t>(end - g0 * src_group_bytes));
                    }
                  });
  return packed;
}

// x[m, k] in the forms a group's weights need, each made on first use and shared by the rest.
struct CpuBackend::MatmulActivations {
  MatmulActivations(const float* x_, int64_t m_, int64_t k_, MatmulScratch& scratch_)
      : x(x_), m(m_), k(k_), scratch(scratch_) {}
  const float* x;  // the rows, or with norm_weight set the rows before the norm
  int64_t m, k;
  MatmulScratch& scratch;
  // Set for rms_norm_matmul_group: the products' x is rms_norm(x), written to normed on first
  // use of float rows (then x points there and norm_weight is null).
  const float* norm_weight = nullptr;
  float norm_eps = 0.f;
  float* normed = nullptr;
  bool have_q8_0 = false, have_q8_k = false, have_bf16 = false;
  std::map<DType, quant::packed::Activations> split;
  int64_t bf16_ld = 0;
};

namespace {

template <class T>
T* grown(std::vector<T>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
  return v.data();
}

}  // namespace

CpuBackend::MatmulScratch& CpuBackend::matmul_scratch() {
  if (!matmul_scratch_) matmul_scratch_ = std::make_unique<MatmulScratch>();
  return *matmul_scratch_;
}

void CpuBackend::trim_matmul_scratch() {
  // Decode and short prefills keep reusing the same pages; after a long prefill (whose work
  // dwarfs a page fault per page) the memory goes back rather than staying resident.
  constexpr size_t kKeepBytes = 16 << 20;
  const MatmulScratch& s = *matmul_scratch_;
  size_t bytes = s.q8_0.capacity() + s.q8_k.capacity() + 2 * s.bf16.capacity();
  for (const auto& [type, split] : s.split) {
    bytes += split.qs.capacity() +
             4 * (split.d.capacity() + split.asum.capacity() + split.offset.capacity());
  }
  if (bytes > kKeepBytes) matmul_scratch_.reset();
}

const float* CpuBackend::float_activations(MatmulActivations& a) {
  if (a.norm_weight) {
    rms_norm(a.x, a.norm_weight, a.m, a.k, a.norm_eps, a.normed);
    a.x = a.normed;
    a.norm_weight = nullptr;
  }
  return a.x;
}

const uint8_t* CpuBackend::quantized_activations(MatmulActivations& a, DType act_type) {
  const bool k_type = act_type == DType::Q8_K;
  const int64_t row = row_bytes(act_type, a.k);
  uint8_t* buf = grown(k_type ? a.scratch.q8_k : a.scratch.q8_0, a.m * row);
  bool& have = k_type ? a.have_q8_k : a.have_q8_0;
  if (!have) {
    const float* x = float_activations(a);
    const quant::QuantizeActFn quantize =
        k_type ? quant_kernels_.quantize_q8_k : quant_kernels_.quantize_q8_0;
    parallel_ranges(a.m, std::max<int64_t>(1, kRowWork / a.k), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) quantize(x + r * a.k, buf + r * row, a.k);
    });
    have = true;
  }
  return buf;
}

const quant::packed::Activations& CpuBackend::packed_activations(MatmulActivations& a, DType type) {
  if (const auto it = a.split.find(type); it != a.split.end()) return it->second;
  // Straight from the floats (an AVX-512 pass) unless another weight already made the GGUF Q8_0
  // rows or the CPU lacks AVX-512 (the 8-row layout's kernels): then from those rows.
  const uint8_t* rows =
      a.have_q8_0 || !packs_weights_ ? quantized_activations(a, DType::Q8_0) : nullptr;
  const int64_t row = row_bytes(DType::Q8_0, a.k);
  const int64_t nb = a.k / 32;
  MatmulScratch::Split& s = a.scratch.split[type];
  int8_t* qs = grown(s.qs, a.m * a.k);
  float* d = grown(s.d, a.m * nb);
  float* asum = grown(s.asum, a.m * nb);
  int32_t* offset = grown(s.offset, a.m * nb);
  parallel_ranges(a.m, std::max<int64_t>(1, kRowWork / a.k), [&](int64_t r0, int64_t r1) {
    // A row normalised here stays in L1 for its quantization (the same bits rms_norm writes:
    // the kernel normalises each row on its own).
    std::vector<float> normed_row(a.norm_weight ? static_cast<size_t>(a.k) : 0);
    for (int64_t r = r0; r < r1; ++r) {
      if (rows) {
        quant::packed::split_activation_row(type, rows + r * row, a.k, qs + r * a.k, d + r * nb,
                                            offset + r * nb, asum + r * nb);
        continue;
      }
      const float* xr = a.x + r * a.k;
      if (a.norm_weight) {
        kernels_.rms_norm(xr, a.norm_weight, 1, a.k, a.norm_eps, normed_row.data());
        xr = normed_row.data();
      }
      quant::packed::quantize_split_row_avx512(type, xr, a.k, qs + r * a.k, d + r * nb,
                                               offset + r * nb, asum + r * nb);
    }
  });
  return a.split[type] = quant::packed::Activations{qs, d, offset, asum, a.k};
}

const uint16_t* CpuBackend::bf16_activations(MatmulActivations& a) {
  // The packed kernels read activation pairs: rows padded to an even length with a zero.
  a.bf16_ld = 2 * quant::bf16_pairs(a.k);
  uint16_t* xb = grown(a.scratch.bf16, a.m * a.bf16_ld);
  if (!a.have_bf16) {
    const float* x = float_activations(a);
    parallel_ranges(a.m, std::max<int64_t>(1, kRowWork / a.k), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        quant::bf16_round_row(x + r * a.k, xb + r * a.bf16_ld, a.k);
        if (a.bf16_ld > a.k) xb[r * a.bf16_ld + a.k] = 0;
      }
    });
    a.have_bf16 = true;
  }
  return xb;
}

void CpuBackend::matmul(const float* x, int64_t m, const Tensor& w, const float* bias, float* y,
                        const PreparedWeight* prepared) {
  const std::lock_guard<std::mutex> lock(matmul_mutex_);  // one user of the scratch at a time
  MatmulActivations acts(x, m, w.shape().rank() == 2 ? w.shape()[1] : 0, matmul_scratch());
  const MatmulWork work = plan_matmul(acts, {&w, bias, y, prepared});
  parallel_ranges(work.n_tasks, 1, work.run);
  trim_matmul_scratch();
}

void CpuBackend::matmul_group(const float* x, int64_t m, const MatmulTarget* targets,
                              int64_t n_targets) {
  check_nonneg(n_targets, "matmul_group", "n_targets");
  if (n_targets == 0) return;
  check_ptr(targets, n_targets, "matmul_group", "targets");
  const Tensor* first = targets[0].weight;
  check_ptr(first, 1, "matmul_group", "weight");
  const std::lock_guard<std::mutex> lock(matmul_mutex_);
  MatmulActivations acts(x, m, first->shape().rank() == 2 ? first->shape()[1] : 0,
                         matmul_scratch());
  run_matmul_group(acts, targets, n_targets);
}

void CpuBackend::rms_norm_matmul_group(const float* x, const float* norm_weight, float eps,
                                       int64_t m, int64_t k, float* h, const MatmulTarget* targets,
                                       int64_t n_targets) {
  check_nonneg(m, "rms_norm_matmul_group", "m");
  check_nonneg(n_targets, "rms_norm_matmul_group", "n_targets");
  AF_CHECK(k > 0, ErrorCode::kInvalidArgument, kComponent,
           "rms_norm_matmul_group: k must be > 0, got ", k);
  if (m == 0 || n_targets == 0) return;
  check_ptr(x, m * k, "rms_norm_matmul_group", "x");
  check_ptr(norm_weight, k, "rms_norm_matmul_group", "norm_weight");
  check_ptr(h, m * k, "rms_norm_matmul_group", "h");
  check_ptr(targets, n_targets, "rms_norm_matmul_group", "targets");
  const std::lock_guard<std::mutex> lock(matmul_mutex_);
  MatmulActivations acts(x, m, k, matmul_scratch());
  acts.norm_weight = norm_weight;
  acts.norm_eps = eps;
  acts.normed = h;
  run_matmul_group(acts, targets, n_targets);
}

void CpuBackend::run_matmul_group(MatmulActivations& acts, const MatmulTarget* targets,
                                  int64_t n_targets) {
  std::vector<MatmulWork> works;
  works.reserve(static_cast<size_t>(n_targets));
  for (int64_t i = 0; i < n_targets; ++i) works.push_back(plan_matmul(acts, targets[i]));
  run_matmul_works(works);
  trim_matmul_scratch();
}

void CpuBackend::run_matmul_works(const std::vector<MatmulWork>& works) {
  std::vector<int64_t> start(works.size() + 1, 0);
  for (size_t i = 0; i < works.size(); ++i) start[i + 1] = start[i] + works[i].n_tasks;
  parallel_ranges(start.back(), 1, [&](int64_t b, int64_t e) {
    // [b, e) may span several works: each gets its own part, in its own task numbers.
    for (size_t i = 0; i < works.size() && b < e; ++i) {
      if (b >= start[i + 1]) continue;
      const int64_t end = std::min(e, start[i + 1]);
      works[i].run(b - start[i], end - start[i]);
      b = end;
    }
  });
}

CpuBackend::MatmulWork CpuBackend::plan_matmul(MatmulActivations& acts,
                                               const MatmulTarget& target) {
  // All argument checks happen here, once; the plans below only compute.
  check_ptr(target.weight, 1, "matmul", "weight");
  const Tensor& w = *target.weight;
  check_matmul_weight(w, "matmul");
  const auto slot = quant::quant_slot(w.dtype());
  const bool bf16_dot = !slot && bf16_dot_ && w.dtype() == DType::BF16;
  const WeightType wt =
      slot || bf16_dot ? WeightType::kF32 : weight_type(w.dtype(), "matmul", "weight");
  check_nonneg(acts.m, "matmul", "m");
  const int64_t n = w.shape()[0];
  const int64_t k = w.shape()[1];
  AF_CHECK(k == acts.k, ErrorCode::kInvalidArgument, kComponent, "matmul_group: a weight of shape ",
           w.shape().str(), " among weights with rows of length ", acts.k);
  const auto* packed = dynamic_cast<const PackedWeight*>(target.prepared);
  AF_CHECK(target.prepared == nullptr ||
               (packed && packed->source() == w.data() && packed->type() == w.dtype() &&
                packed->rows() == n && packed->cols() == k),
           ErrorCode::kInvalidArgument, kComponent,
           "matmul: the prepared weight was not made by prepare_matmul_weight from this ",
           af::name(w.dtype()), " weight of shape ", w.shape().str());
  if (acts.m == 0 || n == 0) return {};
  float* y = target.y;
  const float* bias = target.bias;
  check_ptr(y, 1, "matmul", "y");
  check_ptr(acts.x, k, "matmul", "x");  // before any norm: the caller's rows
  AF_CHECK(k == 0 || w.data() != nullptr, ErrorCode::kInvalidArgument, kComponent,
           "matmul: weight has no data");
  using Layout = PackedWeight::Layout;
  const auto has_layout = [&](Layout layout) { return packed && packed->layout() == layout; };
  // A weight prepared for another path (another ISA, bf16 dot products on or off) is used as
  // it is stored.
  if (bf16_dot && k > 0) {
    return plan_bf16_dot(acts, w, has_layout(Layout::kBf16Pairs) ? packed : nullptr, bias, y);
  }
  if (packs_dense_ && has_layout(Layout::kDense)) {
    return plan_dense_packed(acts, wt, n, packed->data(), bias, y);
  }
  if (packs_weights_ && has_layout(Layout::kInt8Blocks)) {
    return plan_packed(acts, packed->type(), n, packed->data(), nullptr, bias, y);
  }
  if (kpacked_gemm_ && has_layout(Layout::kKQuantBlocks)) {
    return plan_kpacked(acts, packed->type(), n, packed->data(), bias, y);
  }
  if (slot && packed8_gemm_ && acts.m >= kPack8MinRows && k > 0 &&
      quant::packed8::is_packable(w.dtype())) {
    return plan_packed8(acts, w.dtype(), n, reinterpret_cast<const uint8_t*>(w.data()), bias, y);
  }
  if (slot && packs_weights_ && acts.m >= kPackOnTheFlyMinRows && k > 0 &&
      quant::packed::is_packable(w.dtype())) {
    return plan_packed(acts, w.dtype(), n, nullptr, reinterpret_cast<const uint8_t*>(w.data()),
                       bias, y);
  }
  if (slot) return plan_quantized(acts, w, *slot, bias, y);
  return plan_dense(acts, bf16_dot ? WeightType::kBF16 : wt, w, bias, y);
}

CpuBackend::MatmulWork CpuBackend::plan_quantized(MatmulActivations& acts, const Tensor& w,
                                                  quant::QuantSlot slot, const float* bias,
                                                  float* y) {
  const int64_t m = acts.m;
  const int64_t n = w.shape()[0];
  const int64_t k = w.shape()[1];
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) y[i * n + j] = bias ? bias[j] : 0.f;
    }
    return {};
  }
  const DType act_type = quant::vec_dot_type(w.dtype());
  const int64_t w_row = row_bytes(w.dtype(), k);
  const int64_t a_row = row_bytes(act_type, k);
  // Activations are quantized once, then every weight tile reuses them.
  const uint8_t* act = quantized_activations(acts, act_type);
  const quant::QuantDotFn dot = quant_kernels_.dot[slot];
  const auto* wd = reinterpret_cast<const uint8_t*>(w.data());
  // A column chunk's weight rows stay in cache while every activation row passes over them.
  const int64_t grain = m * n * k < kMinParallelMacs ? n : kQuantColumnGrain;
  return {ceil_div(n, grain), [=](int64_t b, int64_t e) {
            const int64_t j0 = b * grain, j1 = std::min(e * grain, n);
            dot(k, wd + j0 * w_row, w_row, j1 - j0, act, a_row, m, y + j0, n);
            if (bias) {
              for (int64_t i = 0; i < m; ++i) {
                for (int64_t j = j0; j < j1; ++j) y[i * n + j] += bias[j];
              }
            }
          }};
}

CpuBackend::MatmulWork CpuBackend::plan_packed(MatmulActivations& acts, DType type, int64_t n,
                                               const uint8_t* prepacked, const uint8_t* gguf,
                                               const float* bias, float* y) {
  namespace pk = quant::packed;
  const int64_t m = acts.m;
  const int64_t k = acts.k;
  const int64_t nb = k / 32;
  const pk::Activations& a = packed_activations(acts, type);
  const pk::PackedGemmFn gemm = pk::avx512vnni_packed_gemm(type);
  const int64_t groups = pk::group_count(n);
  const int64_t group_bytes = nb * pk::group_block_bytes(type);
  if (!prepacked) {
    const pk::PackFn pack = pk::avx512vnni_pack(type);
    const int64_t tile_groups =
        std::min<int64_t>(kPrefillGroups, std::max<int64_t>(3, kPackedTileBytes / group_bytes));
    return packed_tile_tasks(
        m, n * k, groups, group_bytes, tile_groups,
        [=](int64_t g0, int64_t g1, uint8_t* dst) { pack(type, gguf, n, k, g0, g1, dst); },
        [=, &a](const uint8_t* tile, int64_t g0, int64_t g1, int64_t i0, int64_t i1) {
          gemm(tile, g0, g1, n, a, i0, i1, bias, y, n);
        });
  }
  // Tasks are (group tile, row chunk) pairs: a group tile's weights stay in L2 while the row
  // chunk's activations pass over them. Decode splits the groups finely instead.
  int64_t tile_groups = m == 1 ? kDecodeGroups : kPrefillGroups;
  const int64_t row_chunk = m == 1 ? 1 : kPrefillRows;
  if (m * n * k < kMinParallelMacs) tile_groups = groups;
  const int64_t n_tiles = ceil_div(groups, tile_groups);
  const int64_t n_chunks = ceil_div(m, row_chunk);
  return {n_tiles * n_chunks, [=, &a](int64_t t0, int64_t t1) {
            for (int64_t t = t0; t < t1; ++t) {
              const int64_t g0 = t / n_chunks * tile_groups;
              const int64_t i0 = t % n_chunks * row_chunk;
              gemm(prepacked + g0 * group_bytes, g0, std::min(g0 + tile_groups, groups), n, a, i0,
                   std::min(i0 + row_chunk, m), bias, y, n);
            }
          }};
}

CpuBackend::MatmulWork CpuBackend::plan_kpacked(MatmulActivations& acts, DType type, int64_t n,
                                                const uint8_t* packed, const float* bias,
                                                float* y) {
  namespace kp = quant::kpacked;
  const int64_t m = acts.m;
  const int64_t k = acts.k;
  const uint8_t* act = quantized_activations(acts, DType::Q8_K);
  const int64_t a_row = row_bytes(DType::Q8_K, k);
  const kp::GemmFn gemm = kpacked_gemm_(type);
  const int64_t groups = kp::group_count(n);
  const int64_t group_bytes = k / 256 * kp::group_block_bytes(type);
  const kp::GemmFn prefill = kpacked_prefill_ ? kpacked_prefill_(type) : nullptr;
  if (prefill && m >= kKPackedPanelMinRows) {
    return plan_kpacked_prefill(prefill, m, n, k, groups, group_bytes, packed, act, a_row, bias, y);
  }
  if (m >= kKPackedTileMinRows) {
    // Prefill: tiles unpacked back to GGUF rows (same size) for the register-tiled kernels.
    const quant::QuantDotFn dot = quant_kernels_.dot[*quant::quant_slot(type)];
    const int64_t w_row = row_bytes(type, k);
    // Tiles of kQuantColumnGrain rows, the column chunks plan_quantized gives these kernels.
    return packed_tile_tasks(
        m, n * k, groups, group_bytes, kQuantColumnGrain / kp::kGroupRows,
        [=](int64_t g0, int64_t g1, uint8_t* dst) {
          kp::unpack_groups(type, packed + g0 * group_bytes, n, k, g0, g1, dst);
        },
        [=](const uint8_t* tile, int64_t g0, int64_t g1, int64_t i0, int64_t i1) {
          const int64_t j0 = g0 * kp::kGroupRows, j1 = std::min(g1 * kp::kGroupRows, n);
          dot(k, tile, w_row, j1 - j0, act + i0 * a_row, a_row, i1 - i0, y + i0 * n + j0, n);
          if (bias) {
            for (int64_t i = i0; i < i1; ++i) {
              for (int64_t j = j0; j < j1; ++j) y[i * n + j] += bias[j];
            }
          }
        });
  }
  // Tasks are (group tile, row chunk) pairs as in plan_packed: decode splits the groups finely,
  // prefill keeps a group tile in L2 while a row chunk passes over it.
  int64_t tile_groups = m == 1 ? kDecodeGroups : kPrefillGroups;
  const int64_t row_chunk = m == 1 ? 1 : kPrefillRows;
  if (m * n * k < kMinParallelMacs) tile_groups = groups;
  const int64_t n_tiles = ceil_div(groups, tile_groups);
  const int64_t n_chunks = ceil_div(m, row_chunk);
  return {n_tiles * n_chunks, [=](int64_t t0, int64_t t1) {
            for (int64_t t = t0; t < t1; ++t) {
              const int64_t g0 = t / n_chunks * tile_groups;
              const int64_t i0 = t % n_chunks * row_chunk;
              gemm(packed + g0 * group_bytes, g0, std::min(g0 + tile_groups, groups), n, k, act,
                   a_row, i0, std::min(i0 + row_chunk, m), bias, y, n);
            }
          }};
}

CpuBackend::MatmulWork CpuBackend::plan_kpacked_prefill(quant::kpacked::GemmFn gemm, int64_t m,
                                                        int64_t n, int64_t k, int64_t groups,
                                                        int64_t group_bytes, const uint8_t* packed,
                                                        const uint8_t* act, int64_t a_row,
                                                        const float* bias, float* y) {
  // Tasks are (panel tile, row chunk) pairs: the kernel unpacks each panel super-block once
  // for the rows of its chunk, so rows are split only when there are too few tiles to keep every
  // thread busy.
  const int64_t tile_groups =
      m * n * k < kMinParallelMacs ? groups : std::min<int64_t>(groups, kKPackedPanelGroups);
  const int64_t n_tiles = ceil_div(groups, tile_groups);
  const int64_t n_chunks = std::clamp<int64_t>(ceil_div(4 * pool_.num_threads(), n_tiles), 1,
                                               std::max<int64_t>(1, m / kMinRowChunk));
  const int64_t row_chunk = ceil_div(ceil_div(m, n_chunks), 4) * 4;
  const int64_t n_row_chunks = ceil_div(m, row_chunk);
  return {n_tiles * n_row_chunks, [=](int64_t t0, int64_t t1) {
            for (int64_t t = t0; t < t1; ++t) {
              const int64_t g0 = t / n_row_chunks * tile_groups;
              const int64_t i0 = t % n_row_chunks * row_chunk;
              gemm(packed + g0 * group_bytes, g0, std::min(g0 + tile_groups, groups), n, k, act,
                   a_row, i0, std::min(i0 + row_chunk, m), bias, y, n);
            }
          }};
}

CpuBackend::MatmulWork CpuBackend::plan_packed8(MatmulActivations& acts, DType type, int64_t n,
                                                const uint8_t* gguf, const float* bias, float* y) {
  namespace p8 = quant::packed8;
  const int64_t m = acts.m;
  const int64_t k = acts.k;
  const quant::packed::Activations& a = packed_activations(acts, type);
  const p8::GemmFn gemm = packed8_gemm_(type);
  const int64_t groups = p8::group_count(n);
  const int64_t group_bytes = k / 32 * p8::group_block_bytes(type);
  return packed_tile_tasks(
      m, n * k, groups, group_bytes, std::max<int64_t>(1, kPackedTileBytes / group_bytes),
      [=](int64_t g0, int64_t g1, uint8_t* dst) { p8::pack_groups(type, gguf, n, k, g0, g1, dst); },
      [=, &a](const uint8_t* tile, int64_t g0, int64_t g1, int64_t i0, int64_t i1) {
        gemm(tile, g0, g1, n, a, i0, i1, bias, y, n);
      });
}

CpuBackend::MatmulWork CpuBackend::packed_tile_tasks(int64_t m, int64_t nk, int64_t groups,
                                                     int64_t group_bytes, int64_t tile_groups,
                                                     PackTileFn pack, RunTileFn run) {
  // A task packs a tile of groups into its own scratch (kept in L2) and runs a chunk of rows
  // over it. Rows are split only when there are too few tiles to keep every thread busy (each
  // row chunk then packs the tile again).
  if (m * nk < kMinParallelMacs) tile_groups = groups;
  const int64_t n_tiles = ceil_div(groups, tile_groups);
  const int64_t n_chunks = std::clamp<int64_t>(ceil_div(4 * pool_.num_threads(), n_tiles), 1,
                                               std::max<int64_t>(1, m / kMinRowChunk));
  const int64_t row_chunk = ceil_div(ceil_div(m, n_chunks), 4) * 4;
  const int64_t n_row_chunks = ceil_div(m, row_chunk);
  return {n_tiles * n_row_chunks, [=](int64_t t0, int64_t t1) {
            // Uninitialised: pack writes every byte the kernel reads.
            const auto scratch = std::make_unique_for_overwrite<uint8_t[]>(
                static_cast<size_t>(tile_groups * group_bytes));
            for (int64_t t = t0; t < t1; ++t) {
              const int64_t g0 = t / n_row_chunks * tile_groups;
              const int64_t g1 = std::min(g0 + tile_groups, groups);
              const int64_t i0 = t % n_row_chunks * row_chunk;
              pack(g0, g1, scratch.get());
              run(scratch.get(), g0, g1, i0, std::min(i0 + row_chunk, m));
            }
          }};
}

CpuBackend::MatmulWork CpuBackend::plan_dense_packed(MatmulActivations& acts, WeightType wt,
                                                     int64_t n, const uint8_t* packed,
                                                     const float* bias, float* y) {
  const int64_t m = acts.m;
  const int64_t k = acts.k;
  const float* x = float_activations(acts);
  // Tasks are (group tile, row chunk) pairs, as for the other packed kernels.
  const int64_t groups = dense::group_count(n);
  const int64_t tile_groups = m * n * k < kMinParallelMacs ? groups : kDenseTileGroups;
  const int64_t n_tiles = ceil_div(groups, tile_groups);
  const int64_t n_chunks = std::clamp<int64_t>(ceil_div(4 * pool_.num_threads(), n_tiles), 1,
                                               std::max<int64_t>(1, m / kMinRowChunk));
  const int64_t row_chunk = ceil_div(ceil_div(m, n_chunks), kDenseTileRows) * kDenseTileRows;
  const int64_t n_row_chunks = ceil_div(m, row_chunk);
  const int64_t group_bytes = dense::group_chunks(wt, k) * 64;
  return {n_tiles * n_row_chunks, [=](int64_t t0, int64_t t1) {
            for (int64_t t = t0; t < t1; ++t) {
              const int64_t g0 = t / n_row_chunks * tile_groups;
              const int64_t i0 = t % n_row_chunks * row_chunk;
              dense::packed_matmul_avx512(wt, packed + g0 * group_bytes, n, k, g0,
                                          std::min(g0 + tile_groups, groups), x, i0,
                                          std::min(i0 + row_chunk, m), bias, y, n);
            }
          }};
}

CpuBackend::MatmulWork CpuBackend::plan_bf16_dot(MatmulActivations& acts, const Tensor& w,
                                                 const PackedWeight* packed, const float* bias,
                                                 float* y) {
  const int64_t m = acts.m;
  const int64_t n = w.shape()[0];
  const int64_t k = w.shape()[1];
  const auto* wd = reinterpret_cast<const uint16_t*>(w.data());
  const uint16_t* xb = bf16_activations(acts);
  const int64_t ldx = acts.bf16_ld;
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
  return {n_tiles * n_row_chunks, [=](int64_t t0, int64_t t1) {
            for (int64_t t = t0; t < t1; ++t) {
              const int64_t g0 = t / n_row_chunks * tile_groups;
              const int64_t i0 = t % n_row_chunks * row_chunk;
              quant::bf16_packed_gemm(pw ? pw + g0 * group_words : nullptr, wd, n, k, g0,
                                      std::min(g0 + tile_groups, groups), xb, ldx, i0,
                                      std::min(i0 + row_chunk, m), bias, y, n);
            }
          }};
}

CpuBackend::MatmulWork CpuBackend::plan_dense(MatmulActivations& acts, WeightType wt,
                                              const Tensor& w, const float* bias, float* y) {
  const MatmulFn fn = kernels_.matmul[static_cast<int>(wt)];
  const void* wd = w.data();
  const float* x = float_activations(acts);
  const int64_t m = acts.m;
  const int64_t n = w.shape()[0];
  const int64_t k = w.shape()[1];
  const int64_t grain = m * n * k < kMinParallelMacs ? n : kColumnGrain;
  return {ceil_div(n, grain), [=](int64_t b, int64_t e) {
            fn(x, m, k, wd, bias, n, b * grain, std::min(e * grain, n), y);
          }};
}

}  // namespace af::cpu
