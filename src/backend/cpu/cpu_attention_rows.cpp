// CpuBackend::attention_rows: attention over plain rows (encoders, windows, cross-attention).
// The keys are packed once per call into the blocked layout of af/backend/key_cache.hpp, so the
// ISA table's flash-attention kernel (KernelTable::attention, the one the KV cache path uses)
// runs unchanged on them: each work item is one KV head x one block of query tokens against the
// key range its mask gives, always whole (never split by keys), so its output is final and the
// same bits whatever the thread count.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "af/backend/key_cache.hpp"
#include "backend/cpu/backend_util.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/kernels/attention_plan.hpp"
#include "backend/cpu/kernels/reference.hpp"

namespace af::cpu {
namespace {

constexpr const char* kOp = "attention_rows";

void check_mask(const AttentionMask& mask, int64_t n_q, int64_t n_kv) {
  switch (mask.kind) {
    case AttentionMaskKind::kNone:
      AF_CHECK(n_kv > 0 || n_q == 0, ErrorCode::kInvalidArgument, kComponent, kOp,
               ": no keys (n_kv = 0) for ", n_q, " query rows");
      return;
    case AttentionMaskKind::kCausal:
      AF_CHECK(mask.causal_offset >= 0 && mask.causal_offset + n_q <= n_kv,
               ErrorCode::kInvalidArgument, kComponent, kOp, ": causal_offset (",
               mask.causal_offset, ") + n_q (", n_q, ") must lie in [0, n_kv = ", n_kv, "]");
      return;
    case AttentionMaskKind::kBlocks: {
      AF_CHECK(n_q == n_kv, ErrorCode::kInvalidArgument, kComponent, kOp,
               ": block-diagonal mask needs n_q == n_kv, got ", n_q, " and ", n_kv);
      AF_CHECK(mask.n_segments >= 1 && mask.boundaries != nullptr, ErrorCode::kInvalidArgument,
               kComponent, kOp, ": block-diagonal mask needs boundaries for >= 1 segment, got ",
               mask.n_segments);
      AF_CHECK(mask.boundaries[0] == 0 && mask.boundaries[mask.n_segments] == n_q,
               ErrorCode::kInvalidArgument, kComponent, kOp,
               ": segment boundaries must run from 0 to n_q = ", n_q, ", got ", mask.boundaries[0],
               " .. ", mask.boundaries[mask.n_segments]);
      for (int64_t s = 0; s < mask.n_segments; ++s) {
        AF_CHECK(mask.boundaries[s] < mask.boundaries[s + 1], ErrorCode::kInvalidArgument,
                 kComponent, kOp, ": segment ", s, " is empty or reversed (boundaries ",
                 mask.boundaries[s], ", ", mask.boundaries[s + 1], ")");
      }
      return;
    }
  }
  fail(ErrorCode::kInvalidArgument, kComponent, kOp, ": unknown mask kind ",
       static_cast<int>(mask.kind));
}

void check_stride(int64_t stride, int64_t width, const char* what) {
  AF_CHECK(stride >= width, ErrorCode::kInvalidArgument, kComponent, kOp, ": ", what, " (", stride,
           ") is less than the heads' width ", width);
}

// Whether out[0, out_floats) overlaps the rows [0, n) of width `width` at `stride` from p.
bool overlaps(const float* out, int64_t out_floats, const float* p, int64_t n, int64_t stride,
              int64_t width) {
  if (n == 0) return false;
  const auto o = reinterpret_cast<uintptr_t>(out), b = reinterpret_cast<uintptr_t>(p);
  const uintptr_t o_end = o + static_cast<uintptr_t>(out_floats) * sizeof(float);
  const uintptr_t b_end = b + static_cast<uintptr_t>((n - 1) * stride + width) * sizeof(float);
  return o < b_end && b < o_end;
}

// A block of query tokens [t_begin, t_end) that see the same keys [key_begin, key_end) but for
// the causal limit n_past + t (n_past >= n_kv disables it).
struct RowsItem {
  int64_t t_begin, t_end, key_begin, key_end, n_past;
};

// The token blocks of a call: blocks of token_block tokens that never straddle a segment.
std::vector<RowsItem> rows_items(const AttentionMask& mask, int64_t n_q, int64_t n_kv,
                                 int64_t token_block) {
  std::vector<RowsItem> items;
  const auto add_segment = [&](int64_t s0, int64_t s1, int64_t k0, int64_t k1) {
    for (int64_t t = s0; t < s1; t += token_block) {
      const int64_t te = std::min(t + token_block, s1);
      items.push_back({t, te, k0, k1, n_kv});
    }
  };
  if (mask.kind == AttentionMaskKind::kBlocks) {
    for (int64_t s = 0; s < mask.n_segments; ++s) {
      add_segment(mask.boundaries[s], mask.boundaries[s + 1], mask.boundaries[s],
                  mask.boundaries[s + 1]);
    }
  } else if (mask.kind == AttentionMaskKind::kCausal) {
    // Latest blocks first: they see the most keys, so the cheap ones fill the threads' tails.
    for (int64_t t = (n_q - 1) / token_block * token_block; t >= 0; t -= token_block) {
      const int64_t te = std::min(t + token_block, n_q);
      items.push_back({t, te, 0, mask.causal_offset + te, mask.causal_offset});
    }
  } else {
    add_segment(0, n_q, 0, n_kv);
  }
  return items;
}

}  // namespace

void CpuBackend::attention_rows(const float* q, int64_t q_stride, const float* k, int64_t k_stride,
                                const float* v, int64_t v_stride, int64_t n_q, int64_t n_kv,
                                int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, float scale,
                                const AttentionMask& mask, float* out) {
  check_nonneg(n_q, kOp, "n_q");
  check_nonneg(n_kv, kOp, "n_kv");
  AF_CHECK(n_heads > 0 && n_kv_heads > 0 && n_heads % n_kv_heads == 0, ErrorCode::kInvalidArgument,
           kComponent, kOp, ": n_heads (", n_heads, ") must be a positive multiple of n_kv_heads (",
           n_kv_heads, ")");
  AF_CHECK(head_dim > 0, ErrorCode::kInvalidArgument, kComponent, kOp,
           ": head_dim must be > 0, got ", head_dim);
  const int64_t q_dim = n_heads * head_dim;
  const int64_t kv_dim = n_kv_heads * head_dim;
  check_stride(q_stride, q_dim, "q_stride");
  check_stride(k_stride, kv_dim, "k_stride");
  check_stride(v_stride, kv_dim, "v_stride");
  check_mask(mask, n_q, n_kv);
  if (n_q == 0) return;
  check_ptr(q, 1, kOp, "q");
  check_ptr(k, 1, kOp, "k");
  check_ptr(v, 1, kOp, "v");
  check_ptr(out, 1, kOp, "out");
  // Items read q and v while others write out: an alias would feed outputs back in as inputs.
  const int64_t out_floats = n_q * q_dim;
  AF_CHECK(!overlaps(out, out_floats, q, n_q, q_stride, q_dim) &&
               !overlaps(out, out_floats, k, n_kv, k_stride, kv_dim) &&
               !overlaps(out, out_floats, v, n_kv, v_stride, kv_dim),
           ErrorCode::kInvalidArgument, kComponent, kOp, ": out overlaps q, k or v");

  // The kernel reads q and v as packed rows and k in the blocked key layout: one pass each.
  std::vector<float> k_blocked(static_cast<size_t>(key_cache_floats(n_kv, n_kv_heads, head_dim)));
  std::vector<float> q_packed(q_stride == q_dim ? 0 : static_cast<size_t>(n_q * q_dim));
  std::vector<float> v_packed(v_stride == kv_dim ? 0 : static_cast<size_t>(n_kv * kv_dim));
  const int64_t n_rows = std::max(n_q, n_kv);
  parallel_ranges(n_rows, ceil_div(kRowWork, q_dim + 2 * kv_dim), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      if (r < n_kv) {
        store_keys(k_blocked.data(), k + r * k_stride, 1, r, n_kv_heads, head_dim);
        if (!v_packed.empty()) std::copy_n(v + r * v_stride, kv_dim, v_packed.data() + r * kv_dim);
      }
      if (r < n_q && !q_packed.empty()) {
        std::copy_n(q + r * q_stride, q_dim, q_packed.data() + r * q_dim);
      }
    }
  });
  const float* qp = q_packed.empty() ? q : q_packed.data();
  const float* vp = v_packed.empty() ? v : v_packed.data();

  const AttentionShape shape{n_q, 0, n_heads, n_kv_heads, head_dim, scale};
  const int64_t token_block = plan_attention(shape).token_block;
  const AttentionPlan sizes = plan_attention(shape, token_block, std::max<int64_t>(n_kv, 1));
  const int64_t group = sizes.group;
  const int64_t rows = sizes.rows_per_item();
  const std::vector<RowsItem> items = rows_items(mask, n_q, n_kv, token_block);
  const int64_t n_items = static_cast<int64_t>(items.size()) * n_kv_heads;
  parallel_ranges(n_items, 1, [&](int64_t i0, int64_t i1) {
    std::vector<float> scratch(static_cast<size_t>(sizes.scratch_floats()));
    std::vector<float> acc(static_cast<size_t>(rows * head_dim));
    std::vector<float> stats(static_cast<size_t>(2 * rows));
    for (int64_t n = i0; n < i1; ++n) {
      const RowsItem& it = items[static_cast<size_t>(n / n_kv_heads)];
      const int64_t kv_head = n % n_kv_heads;
      AttentionShape item_shape = shape;
      item_shape.n_past = it.n_past;
      kernels_.attention(qp, k_blocked.data(), vp, item_shape, kv_head, it.t_begin, it.t_end,
                         it.key_begin, it.key_end, acc.data(), stats.data(), stats.data() + rows,
                         scratch.data());
      for (int64_t r = 0; r < (it.t_end - it.t_begin) * group; ++r) {
        const int64_t t = it.t_begin + r / group;
        float* o = out + t * q_dim + (kv_head * group + r % group) * head_dim;
        const float sum = stats[static_cast<size_t>(rows + r)];
        for (int64_t d = 0; d < head_dim; ++d)
          o[d] = acc[static_cast<size_t>(r * head_dim + d)] / sum;
      }
    }
  });
}

}  // namespace af::cpu
