// Backend::attention_rows (attention over plain rows, for encoders) on every ISA this CPU has,
// 1 and 2 threads, against the float64 reference ref::attention_rows, on random inputs with odd
// sizes: n_q 1..257, head_dim 17..80, GQA groups 1/2/4, no mask, causal with an offset and
// block-diagonal segments of uneven lengths; q/k/v read as column slices of one fused qkv buffer.
// Bound: outputs are convex combinations of value rows in [-1, 1], so the float32 kernels' error
// (scores and sums in float, exp within 2 ulp) is absolute: |got - ref| <= 1e-5 + 1e-5 * |ref|.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "af/backend/backend.hpp"
#include "af/core/error.hpp"
#include "backend/cpu/dispatch.hpp"
#include "backend/cpu/kernels/reference.hpp"
#include "test_util.hpp"

namespace af::cpu {
namespace {

using test::random_floats;

struct RowsCase {
  int64_t n_q, n_kv, n_heads, n_kv_heads, head_dim;
  AttentionMaskKind kind;
  int64_t causal_offset;
  std::vector<int64_t> boundaries;  // kBlocks
  std::string str() const {
    std::ostringstream s;  // (not string operator+: GCC 12 -Wrestrict false positive)
    s << "n_q=" << n_q << " n_kv=" << n_kv << " heads=" << n_heads << "/" << n_kv_heads
      << " hd=" << head_dim << " mask=" << static_cast<int>(kind) << " off=" << causal_offset;
    for (int64_t b : boundaries) s << " " << b;
    return s.str();
  }
  AttentionMask mask() const {
    AttentionMask m;
    m.kind = kind;
    m.causal_offset = causal_offset;
    m.boundaries = boundaries.empty() ? nullptr : boundaries.data();
    m.n_segments = boundaries.empty() ? 0 : static_cast<int64_t>(boundaries.size()) - 1;
    return m;
  }
};

// One fused buffer [n, q_dim + 2 * kv_dim + 3] holding q | k | v | padding per row.
struct Fused {
  std::vector<float> data;
  int64_t stride, q_dim, kv_dim;
  const float* q() const { return data.data(); }
  const float* k() const { return data.data() + q_dim; }
  const float* v() const { return data.data() + q_dim + kv_dim; }
};

Fused make_fused(const RowsCase& c, uint32_t seed) {
  Fused f;
  f.q_dim = c.n_heads * c.head_dim;
  f.kv_dim = c.n_kv_heads * c.head_dim;
  f.stride = f.q_dim + 2 * f.kv_dim + 3;
  const int64_t n = std::max(c.n_q, c.n_kv);
  f.data = random_floats(static_cast<size_t>(n * f.stride), -1.0f, 1.0f, seed);
  // Spread the query magnitudes so some rows' softmax is peaked, others flat.
  for (int64_t t = 0; t < c.n_q; ++t) {
    for (int64_t i = 0; i < f.q_dim; ++i)
      f.data[static_cast<size_t>(t * f.stride + i)] *= 1 + t % 5;
  }
  return f;
}

std::vector<float> reference(const RowsCase& c, const Fused& f) {
  std::vector<float> out(static_cast<size_t>(c.n_q * f.q_dim));
  const AttentionMask mask = c.mask();
  ref::attention_rows(f.q(), f.stride, f.k(), f.stride, f.v(), f.stride, c.n_q, c.n_kv, c.n_heads,
                      c.n_kv_heads, c.head_dim, 1.0f / std::sqrt(float(c.head_dim)), mask,
                      out.data());
  return out;
}

std::vector<float> run(Backend& be, const RowsCase& c, const Fused& f) {
  std::vector<float> out(static_cast<size_t>(c.n_q * f.q_dim), NAN);
  be.attention_rows(f.q(), f.stride, f.k(), f.stride, f.v(), f.stride, c.n_q, c.n_kv, c.n_heads,
                    c.n_kv_heads, c.head_dim, 1.0f / std::sqrt(float(c.head_dim)), c.mask(),
                    out.data());
  return out;
}

std::vector<RowsCase> cases() {
  std::vector<RowsCase> out;
  const int64_t head_dims[] = {32, 64, 80, 72, 40, 17};
  const int64_t groups[] = {1, 2, 4};
  int i = 0;
  for (int64_t n : {1, 2, 7, 16, 33, 64, 65, 130, 257}) {
    for (AttentionMaskKind kind :
         {AttentionMaskKind::kNone, AttentionMaskKind::kCausal, AttentionMaskKind::kBlocks}) {
      const int64_t hd = head_dims[i % 6];
      const int64_t group = groups[i / 2 % 3];  // not locked to head_dim's cycle
      const int64_t kv_heads = 1 + i % 2;
      ++i;
      RowsCase c{n, n, kv_heads * group, kv_heads, hd, kind, 0, {}};
      if (kind == AttentionMaskKind::kNone) c.n_kv = n + i % 3 * 11;  // cross-attention shapes
      if (kind == AttentionMaskKind::kCausal) {
        c.causal_offset = i % 2 ? 5 : 0;
        c.n_kv = n + c.causal_offset + i % 3;
      }
      if (kind == AttentionMaskKind::kBlocks) {
        // Uneven segments: 1, then thirds with the remainder in the middle.
        c.boundaries = {0};
        if (n > 3) c.boundaries.push_back(1);
        if (n > 6) c.boundaries.push_back(1 + (n - 1) / 3);
        if (n > 9) c.boundaries.push_back(n - (n - 1) / 3 + 2);
        c.boundaries.push_back(n);
      }
      out.push_back(c);
    }
  }
  // The ViT-L/14-336 shape (577 tokens, 16 x 64) as two images in one call.
  out.push_back({1154, 1154, 16, 16, 64, AttentionMaskKind::kBlocks, 0, {0, 577, 1154}});
  return out;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_LE(std::fabs(got[i] - want[i]), 1e-5f + 1e-5f * std::fabs(want[i]))
        << what << " at " << i << ": got " << got[i] << " want " << want[i];
  }
}

TEST(AttentionRows, EveryIsaAndThreadCountMatchesFloat64Reference) {
  uint32_t seed = 1;
  for (const RowsCase& c : cases()) {
    const Fused f = make_fused(c, seed++);
    const std::vector<float> want = reference(c, f);
    for (Isa isa : supported_isas()) {
      // The scalar table on the two-image ViT shape takes seconds and adds no coverage.
      if (isa == Isa::kScalar && c.n_q > 300) continue;
      std::vector<float> first;
      for (int threads : {1, 2}) {
        auto be = make_backend({Device::cpu(), threads, isa_name(isa)});
        const std::vector<float> got = run(*be, c, f);
        const std::string what =
            std::string(isa_name(isa)) + " threads=" + std::to_string(threads) + " " + c.str();
        expect_close(got, want, what);
        // Work items never depend on the thread count, so neither do the bits.
        if (threads == 1) {
          first = got;
        } else {
          EXPECT_EQ(got, first) << what;
        }
      }
    }
  }
}

// A row of the block-diagonal mask must ignore every other segment: changing the keys and values
// of segment 1 leaves segment 0's and 2's outputs bit for bit.
TEST(AttentionRows, BlocksIsolateSegments) {
  RowsCase c{40, 40, 4, 2, 32, AttentionMaskKind::kBlocks, 0, {0, 13, 29, 40}};
  Fused f = make_fused(c, 77);
  auto be = make_backend({Device::cpu(), 2, ""});
  const std::vector<float> before = run(*be, c, f);
  for (int64_t t = 13; t < 29; ++t) {
    for (int64_t i = f.q_dim; i < f.stride; ++i) f.data[static_cast<size_t>(t * f.stride + i)] = 3;
  }
  const std::vector<float> after = run(*be, c, f);
  for (int64_t t = 0; t < c.n_q; ++t) {
    const bool inside = t >= 13 && t < 29;
    for (int64_t i = 0; i < f.q_dim; ++i) {
      const size_t at = static_cast<size_t>(t * f.q_dim + i);
      if (inside) {
        EXPECT_FLOAT_EQ(after[at], 3.0f) << t;  // every value row of the segment is 3
      } else {
        ASSERT_EQ(after[at], before[at]) << t;
      }
    }
  }
}

void expect_invalid(const RowsCase& c, int64_t stride_cut, const std::string& needle) {
  const Fused f = make_fused(c, 5);
  auto be = make_backend({Device::cpu(), 1, ""});
  std::vector<float> out(static_cast<size_t>(std::max<int64_t>(c.n_q, 1) * f.q_dim));
  try {
    be->attention_rows(f.q(), f.stride, f.k(), f.kv_dim - stride_cut, f.v(), f.stride, c.n_q,
                       c.n_kv, c.n_heads, c.n_kv_heads, c.head_dim, 0.1f, c.mask(), out.data());
    ADD_FAILURE() << "no error for " << c.str();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(AttentionRows, BadArgumentsThrowNamingTheField) {
  using K = AttentionMaskKind;
  expect_invalid({8, 8, 4, 2, 16, K::kNone, 0, {}}, 1, "k_stride");
  expect_invalid({8, 8, 3, 2, 16, K::kNone, 0, {}}, 0, "n_kv_heads");
  expect_invalid({8, 10, 2, 2, 16, K::kCausal, 3, {}}, 0, "causal_offset");
  expect_invalid({8, 8, 2, 2, 16, K::kCausal, -1, {}}, 0, "causal_offset");
  expect_invalid({8, 9, 2, 2, 16, K::kBlocks, 0, {0, 8}}, 0, "n_q == n_kv");
  expect_invalid({8, 8, 2, 2, 16, K::kBlocks, 0, {0, 4, 7}}, 0, "boundaries");
  expect_invalid({8, 8, 2, 2, 16, K::kBlocks, 0, {0, 4, 4, 8}}, 0, "segment 1");
  expect_invalid({8, 8, 2, 2, 16, K::kBlocks, 0, {}}, 0, "segment");
  expect_invalid({8, 0, 2, 2, 16, K::kNone, 0, {}}, 0, "no keys");
}

// out written over the fused qkv buffer it reads would corrupt later items' inputs.
TEST(AttentionRows, OutAliasingInputsThrows) {
  const RowsCase c{8, 8, 2, 2, 16, AttentionMaskKind::kNone, 0, {}};
  Fused f = make_fused(c, 9);
  auto be = make_backend({Device::cpu(), 1, ""});
  try {
    be->attention_rows(f.q(), f.stride, f.k(), f.stride, f.v(), f.stride, c.n_q, c.n_kv, c.n_heads,
                       c.n_kv_heads, c.head_dim, 0.25f, c.mask(), f.data.data() + f.stride);
    ADD_FAILURE() << "no error for out inside qkv";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("out overlaps"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace af::cpu
