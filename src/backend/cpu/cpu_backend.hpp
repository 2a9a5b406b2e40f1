#pragma once
// The CPU implementation of af::Backend: argument checks, then each op split across a persistent
// thread pool and run by the kernel table of the chosen ISA. Every output element is computed by
// the same code path whatever the thread count, so results do not depend on it.
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "af/backend/backend.hpp"
#include "backend/cpu/dispatch.hpp"
#include "backend/cpu/packed_weight.hpp"
#include "backend/cpu/quant/kpacked.hpp"
#include "backend/cpu/quant/packed.hpp"
#include "backend/cpu/quant/packed8.hpp"
#include "backend/cpu/quant/quant_kernels.hpp"
#include "backend/cpu/thread_pool.hpp"

namespace af::cpu {

class CpuBackend final : public Backend {
 public:
  // Throws af::Error: kInvalidArgument for an unknown options.isa or negative num_threads,
  // kUnsupported if this CPU lacks the requested ISA.
  explicit CpuBackend(const BackendOptions& options);

  std::string name() const override;
  Device device() const override { return Device::cpu(); }
  int num_threads() const override { return pool_.num_threads(); }
  const KernelTable& kernels() const { return kernels_; }
  const quant::QuantKernels& quant_kernels() const { return quant_kernels_; }

  void matmul(const float* x, int64_t m, const Tensor& w, const float* bias, float* y,
              const PreparedWeight* prepared = nullptr) override;
  // x is quantized / rounded once per form its weights need, and all the products' tasks run
  // in one parallel pass (one wake-up, one tail instead of one per product).
  void matmul_group(const float* x, int64_t m, const MatmulTarget* targets,
                    int64_t n_targets) override;
  // The norm runs on first use of a form that needs float rows (written to h); the packed int8
  // kernels' rows are normalised and quantized row by row from L1 instead.
  void rms_norm_matmul_group(const float* x, const float* norm_weight, float eps, int64_t m,
                             int64_t k, float* h, const MatmulTarget* targets,
                             int64_t n_targets) override;
  // Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 weights are repacked (quant/packed.hpp) where the quantized
  // table is the AVX-512 VNNI one, BF16 weights (quant/bf16_dot.hpp) when bf16 dot products are
  // on, F32/F16/BF16 (kernels/dense_packed.hpp) where the dense table is the AVX-512 one;
  // everything else is used as is (nullptr).
  std::shared_ptr<const PreparedWeight> prepare_matmul_weight(const Tensor& w) override;
  void rms_norm(const float* x, const float* w, int64_t rows, int64_t dim, float eps,
                float* y) override;
  void layer_norm(const float* x, const float* w, const float* b, int64_t rows, int64_t dim,
                  float eps, float* y) override;
  void rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t rotary_dim,
            const int32_t* positions, const float* inv_freq, RopeLayout layout) override;
  void softmax(float* x, int64_t rows, int64_t n) override;
  void silu(float* x, int64_t n) override;
  void silu_mul(float* gate, const float* up, int64_t n) override;
  void gelu(float* x, int64_t n, GeluKind kind) override;
  void add_scaled(float* y, const float* x, float scale, int64_t n) override;
  void scale(float* x, float scale, int64_t n) override;
  void attention(const float* q, const float* k, const float* v, int64_t n_tokens, int64_t n_past,
                 int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float scale,
                 float* out) override;
  void attention_f16(const float* q, const uint16_t* k, const uint16_t* v, int64_t n_tokens,
                     int64_t n_past, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                     float scale, float* out) override;
  // Any combination of f32, f16 and q8_0 keys and values (KernelTable::attention_kv).
  void attention_kv(const float* q, const KvCacheView& kv, int64_t n_tokens, int64_t n_past,
                    int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float scale,
                    float* out) override;
  // cpu_attention_rows.cpp: keys packed once into the blocked layout, then the table's
  // attention kernel per KV head x query block.
  void attention_rows(const float* q, int64_t q_stride, const float* k, int64_t k_stride,
                      const float* v, int64_t v_stride, int64_t n_q, int64_t n_kv, int64_t n_heads,
                      int64_t n_kv_heads, int64_t head_dim, float scale, const AttentionMask& mask,
                      float* out) override;
  void embedding(const Tensor& table, const int32_t* ids, int64_t n, float* y) override;

 private:
  // Splits [0, n_items) into ranges of `grain` items (the last may be short) and runs
  // fn(begin, end) on them across the pool.
  template <class Fn>
  void parallel_ranges(int64_t n_items, int64_t grain, Fn&& fn) {
    if (n_items <= 0) return;
    if (grain < 1) grain = 1;
    pool_.parallel_for((n_items + grain - 1) / grain, [&](int64_t tb, int64_t te) {
      const int64_t end = te * grain < n_items ? te * grain : n_items;
      fn(tb * grain, end);
    });
  }

  // Both attention calls: checks, the plan's items across the pool, the merges (T: the KV
  // cache's element).
  template <class T>
  void attention_impl(AttentionKernel<T> fn, const float* q, const T* k, const T* v,
                      int64_t n_tokens, int64_t n_past, int64_t n_heads, int64_t n_kv_heads,
                      int64_t head_dim, float scale, float* out);

  // Matmuls as tasks (cpu_matmul.cpp): x in the forms the weights need, made once per group,
  // and each product's work as tasks [0, n_tasks) that may run in any order on any thread.
  // Grow-only buffers for the forms of x, reused by every matmul: fresh pages on each call cost
  // a page fault each (an exit to the hypervisor on a VM), measured at 8 % of a Q4_0 prefill.
  struct MatmulScratch {
    std::vector<uint8_t> q8_0, q8_k;  // GGUF rows of the activation types
    struct Split {                    // Q8_0 rows split for a packed type (quant/packed.hpp)
      std::vector<int8_t> qs;
      std::vector<float> d, asum;
      std::vector<int32_t> offset;
    };
    std::map<DType, Split> split;  // by weight type: the offsets depend on it
    std::vector<uint16_t> bf16;    // rows rounded to bf16, padded to an even length
  };
  struct MatmulActivations;
  MatmulScratch& matmul_scratch();  // made on first use
  void trim_matmul_scratch();       // drops it when a long prefill grew it past 16 MiB
  struct MatmulWork {
    int64_t n_tasks = 0;
    std::function<void(int64_t begin, int64_t end)> run;
  };
  // The forms of x, each made (in parallel over rows) on first use.
  const float* float_activations(MatmulActivations& a);
  const uint8_t* quantized_activations(MatmulActivations& a, DType act_type);
  const quant::packed::Activations& packed_activations(MatmulActivations& a, DType type);
  const uint16_t* bf16_activations(MatmulActivations& a);
  // Checks one product's arguments (what matmul() documents) and plans its work.
  MatmulWork plan_matmul(MatmulActivations& acts, const MatmulTarget& target);
  // Runs the works' tasks in one parallel pass.
  void run_matmul_works(const std::vector<MatmulWork>& works);
  void run_matmul_group(MatmulActivations& acts, const MatmulTarget* targets, int64_t n_targets);
  MatmulWork plan_quantized(MatmulActivations& acts, const Tensor& w, quant::QuantSlot slot,
                            const float* bias, float* y);
  // The packed int8 kernels on `prepacked` (a PackedWeight's data) or, when it is null, on the
  // GGUF rows `gguf`, packed tile by tile into scratch.
  MatmulWork plan_packed(MatmulActivations& acts, DType type, int64_t n, const uint8_t* prepacked,
                         const uint8_t* gguf, const float* bias, float* y);
  // vdpbf16ps on activations rounded to bf16: the packed kernels on `packed`, or on tiles packed
  // during the call (so every batch size sums in the same order).
  MatmulWork plan_bf16_dot(MatmulActivations& acts, const Tensor& w, const PackedWeight* packed,
                           const float* bias, float* y);
  // Tasks over tiles of weight groups packed during the call (pack(g0, g1, dst) packs groups
  // [g0, g1) at dst; run(tile, g0, g1, i0, i1) multiplies rows [i0, i1) with them) for m rows
  // and a weight of nk elements.
  // Q4_K / Q5_K / Q6_K weights prepared in the K-quant packed layout (quant/kpacked.hpp).
  MatmulWork plan_kpacked(MatmulActivations& acts, DType type, int64_t n, const uint8_t* packed,
                          const float* bias, float* y);
  // Their many-row kernel `gemm` straight on the packed groups (no tile copies).
  MatmulWork plan_kpacked_prefill(quant::kpacked::GemmFn gemm, int64_t m, int64_t n, int64_t k,
                                  int64_t groups, int64_t group_bytes, const uint8_t* packed,
                                  const uint8_t* act, int64_t a_row, const float* bias, float* y);
  using PackTileFn = std::function<void(int64_t g0, int64_t g1, uint8_t* dst)>;
  using RunTileFn =
      std::function<void(const uint8_t* tile, int64_t g0, int64_t g1, int64_t i0, int64_t i1)>;
  MatmulWork packed_tile_tasks(int64_t m, int64_t nk, int64_t groups, int64_t group_bytes,
                               int64_t tile_groups, PackTileFn pack, RunTileFn run);
  // The 8-row packed kernels of packed8_gemm_ on the GGUF rows `gguf`, packed tile by tile into
  // scratch.
  MatmulWork plan_packed8(MatmulActivations& acts, DType type, int64_t n, const uint8_t* gguf,
                          const float* bias, float* y);
  MatmulWork plan_dense_packed(MatmulActivations& acts, WeightType wt, int64_t n,
                               const uint8_t* packed, const float* bias, float* y);
  MatmulWork plan_dense(MatmulActivations& acts, WeightType wt, const Tensor& w, const float* bias,
                        float* y);

  const KernelTable& kernels_;

  const quant::QuantKernels& quant_kernels_;
  bool bf16_dot_ = false;  // options.bf16_dot on a CPU with AVX512_BF16 and the avx512 table
  // The quantized table is the AVX-512 VNNI one: Q4_0..Q8_0 weights go through the packed
  // kernels (repacked at load, or tile by tile for prefills of kPackOnTheFlyMinRows+ rows).
  bool packs_weights_ = false;
  // The dense table is the AVX-512 one: F32/F16/BF16 weights are repacked at load
  // (kernels/dense_packed.hpp) unless bf16 dot products take the BF16 ones.
  bool packs_dense_ = false;
  // The quantized table is the AVX2 or AVX-VNNI one: prefills pack Q4_0 and Q8_0 weights tile by
  // tile in 8-row groups (quant/packed8.hpp) for this kernel.
  quant::packed8::GemmFn (*packed8_gemm_)(DType) = nullptr;
  // The K-quant packed kernels of the quantized table's ISA (AVX-512 VNNI, AVX-VNNI or AVX2):
  // Q4_K / Q5_K / Q6_K weights are repacked at load (quant/kpacked.hpp) when set.
  quant::kpacked::GemmFn (*kpacked_gemm_)(DType) = nullptr;
  // Their many-row (prefill) kernels (AVX-512 VNNI: every packable type; AVX-VNNI and AVX2:
  // Q2_K and Q3_K), else null.
  quant::kpacked::GemmFn (*kpacked_prefill_)(DType) = nullptr;
  ThreadPool pool_;
  // The activation buffers matmuls reuse, and the lock that gives them one user at a time.
  std::mutex matmul_mutex_;
  std::unique_ptr<MatmulScratch> matmul_scratch_;
};

std::unique_ptr<Backend> make_cpu_backend(const BackendOptions& options);

}  // namespace af::cpu
