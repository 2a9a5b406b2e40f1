// Every SIMD kernel table this CPU supports against the scalar reference, on random inputs with
// odd sizes. Bounds (|got - ref| <= bound per element) are stated beside each test.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "af/core/half.hpp"
#include "af/core/tensor.hpp"
#include "backend/cpu/dispatch.hpp"
#include "backend/cpu/kernels/attention_plan.hpp"
#include "key_cache_test_util.hpp"
#include "test_util.hpp"

namespace af::cpu {
namespace {

using test::random_floats;

// The SIMD tables to check (the scalar table is the oracle itself).
std::vector<Isa> simd_isas() {
  std::vector<Isa> out;
  for (Isa isa : supported_isas()) {
    if (isa != Isa::kScalar) out.push_back(isa);
  }
  return out;
}

const KernelTable& ref_table() { return kernel_table(Isa::kScalar); }

// Weight rows stored as `wt`, plus the float values they decode to (what the reference sees).
struct Weights {
  std::vector<uint16_t> half;  // f16/bf16 bits
  std::vector<float> f32;      // f32 storage, or the decoded half values
  const void* data(WeightType wt) const {
    return wt == WeightType::kF32 ? static_cast<const void*>(f32.data()) : half.data();
  }
};

Weights make_weights(WeightType wt, size_t n, uint32_t seed) {
  Weights w;
  w.f32 = random_floats(n, -1.0f, 1.0f, seed);
  if (wt == WeightType::kF32) return w;
  w.half.resize(n);
  for (size_t i = 0; i < n; ++i) {
    w.half[i] = wt == WeightType::kF16 ? f32_to_f16(w.f32[i]) : f32_to_bf16(w.f32[i]);
    w.f32[i] = wt == WeightType::kF16 ? f16_to_f32(w.half[i]) : bf16_to_f32(w.half[i]);
  }
  return w;
}

const char* wt_name(WeightType wt) {
  return wt == WeightType::kF32 ? "f32" : wt == WeightType::kF16 ? "f16" : "bf16";
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, float rel,
                  float abs, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    const float bound = abs + rel * std::fabs(want[i]);
    ASSERT_LE(std::fabs(got[i] - want[i]), bound)
        << what << " at " << i << ": got " << got[i] << " want " << want[i];
  }
}

// Bound: float accumulation error grows with the sum of |x_i w_i| (not with |y|, which can
// cancel to ~0), so |got - ref| <= 1e-5 * (sum_i |x_i w_i| + |bias|) + 1e-6.
TEST(CpuKernels, MatmulMatchesReference) {
  for (Isa isa : simd_isas()) {
    const KernelTable& simd = kernel_table(isa);
    for (WeightType wt : {WeightType::kF32, WeightType::kF16, WeightType::kBF16}) {
      for (int64_t m : {1, 3, 5, 17, 50}) {
        for (int64_t k : {1, 7, 33, 100, 257}) {
          for (int64_t n : {1, 5, 19, 37}) {
            for (bool with_bias : {false, true}) {
              const std::string what = std::string(isa_name(isa)) + " " + wt_name(wt) +
                                       " m=" + std::to_string(m) + " k=" + std::to_string(k) +
                                       " n=" + std::to_string(n) +
                                       " bias=" + std::to_string(with_bias);
              const uint32_t seed = static_cast<uint32_t>(m * 1000 + k * 10 + n);
              const auto x = random_floats(static_cast<size_t>(m * k), -1.0f, 1.0f, seed);
              const Weights w = make_weights(wt, static_cast<size_t>(n * k), seed + 1);
              const auto bias = random_floats(static_cast<size_t>(n), -1.0f, 1.0f, seed + 2);
              const float* b = with_bias ? bias.data() : nullptr;
              const int wi = static_cast<int>(wt);
              std::vector<float> want(static_cast<size_t>(m * n)), got(want.size());
              ref_table().matmul[wi](x.data(), m, k, w.data(wt), b, n, 0, n, want.data());
              simd.matmul[wi](x.data(), m, k, w.data(wt), b, n, 0, n, got.data());
              for (int64_t r = 0; r < m; ++r) {
                for (int64_t j = 0; j < n; ++j) {
                  double mag = with_bias ? std::fabs(bias[static_cast<size_t>(j)]) : 0.0;
                  for (int64_t i = 0; i < k; ++i) {
                    mag += std::fabs(double(x[static_cast<size_t>(r * k + i)]) *
                                     w.f32[static_cast<size_t>(j * k + i)]);
                  }
                  const size_t idx = static_cast<size_t>(r * n + j);
                  ASSERT_LE(std::fabs(got[idx] - want[idx]), 1e-5 * mag + 1e-6)
                      << what << " at row " << r << " col " << j;
                }
              }
              // Computing the columns in two slices (as two threads would) must give the same
              // bits as one call: the split must not change any element's arithmetic.
              std::vector<float> split(want.size());
              const int64_t cut = n > 16 ? 16 : n / 2;
              simd.matmul[wi](x.data(), m, k, w.data(wt), b, n, 0, cut, split.data());
              simd.matmul[wi](x.data(), m, k, w.data(wt), b, n, cut, n, split.data());
              ASSERT_EQ(0, std::memcmp(split.data(), got.data(), got.size() * sizeof(float)))
                  << what;
            }
          }
        }
      }
    }
  }
}

// Conversions are exact: bit equality for every non-NaN f16/bf16 pattern.
TEST(CpuKernels, ToF32IsExactForAllHalfPatterns) {
  std::vector<uint16_t> all(65536);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  for (Isa isa : simd_isas()) {
    for (WeightType wt : {WeightType::kF16, WeightType::kBF16}) {
      const int wi = static_cast<int>(wt);
      // An odd length and offset exercise the partial tail.
      for (int64_t len : {int64_t{65536}, int64_t{65533}, int64_t{5}}) {
        std::vector<float> want(static_cast<size_t>(len)), got(want.size());
        ref_table().to_f32[wi](all.data() + (65536 - len), len, want.data());
        kernel_table(isa).to_f32[wi](all.data() + (65536 - len), len, got.data());
        for (size_t i = 0; i < want.size(); ++i) {
          if (std::isnan(want[i])) {
            ASSERT_TRUE(std::isnan(got[i])) << isa_name(isa) << " " << wt_name(wt) << " " << i;
          } else {
            ASSERT_EQ(0, std::memcmp(&want[i], &got[i], 4))
                << isa_name(isa) << " " << wt_name(wt) << " pattern " << i;
          }
        }
      }
    }
  }
}

// Bound: |got - ref| <= 1e-5 |ref| + 1e-6 (a sum of squares in float, then one product).
TEST(CpuKernels, NormsMatchReference) {
  for (Isa isa : simd_isas()) {
    const KernelTable& simd = kernel_table(isa);
    for (int64_t rows : {1, 3, 5}) {
      for (int64_t dim : {1, 7, 33, 100, 257}) {
        const std::string what = std::string(isa_name(isa)) + " rows=" + std::to_string(rows) +
                                 " dim=" + std::to_string(dim);
        const uint32_t seed = static_cast<uint32_t>(rows * 100 + dim);
        // An offset mean checks the centred variance of layer_norm.
        const auto x = random_floats(static_cast<size_t>(rows * dim), -2.0f, 3.0f, seed);
        const auto w = random_floats(static_cast<size_t>(dim), 0.5f, 1.5f, seed + 1);
        const auto b = random_floats(static_cast<size_t>(dim), -1.0f, 1.0f, seed + 2);
        std::vector<float> want(x.size()), got(x.size());
        ref_table().rms_norm(x.data(), w.data(), rows, dim, 1e-6f, want.data());
        simd.rms_norm(x.data(), w.data(), rows, dim, 1e-6f, got.data());
        expect_close(got, want, 1e-5f, 1e-6f, "rms_norm " + what);
        std::vector<float> inplace = x;  // x and y may alias
        simd.rms_norm(inplace.data(), w.data(), rows, dim, 1e-6f, inplace.data());
        EXPECT_EQ(inplace, got) << what;
        for (const float* bias : {static_cast<const float*>(nullptr), b.data()}) {
          ref_table().layer_norm(x.data(), w.data(), bias, rows, dim, 1e-5f, want.data());
          simd.layer_norm(x.data(), w.data(), bias, rows, dim, 1e-5f, got.data());
          expect_close(got, want, 1e-5f, 1e-5f, "layer_norm " + what);
        }
      }
    }
  }
}

// Bound: 1e-6 absolute on |x| <= 1 (same angles, same products; only FMA contraction differs).
TEST(CpuKernels, RopeMatchesReference) {
  for (Isa isa : simd_isas()) {
    for (RopeLayout layout : {RopeLayout::kHalf, RopeLayout::kInterleaved}) {
      for (int64_t head_dim : {8, 64, 80}) {
        for (int64_t rotary_dim : {head_dim, head_dim / 2, int64_t{2}}) {
          const int64_t n_tokens = 3, n_heads = 5;
          const std::string what =
              std::string(isa_name(isa)) + " layout=" + std::to_string(static_cast<int>(layout)) +
              " head_dim=" + std::to_string(head_dim) + " rotary=" + std::to_string(rotary_dim);
          const auto x = random_floats(static_cast<size_t>(n_tokens * n_heads * head_dim), -1.0f,
                                       1.0f, static_cast<uint32_t>(head_dim + rotary_dim));
          std::vector<float> inv_freq(static_cast<size_t>(rotary_dim / 2));
          for (size_t i = 0; i < inv_freq.size(); ++i) {
            inv_freq[i] = 1.0f / std::pow(10000.0f, 2.0f * i / static_cast<float>(rotary_dim));
          }
          const int32_t positions[] = {0, 17, 4093};
          std::vector<float> want = x, got = x;
          std::vector<float> scratch(static_cast<size_t>(3 * rotary_dim));
          ref_table().rope(want.data(), n_tokens, n_heads, head_dim, rotary_dim, positions,
                           inv_freq.data(), layout, scratch.data());
          kernel_table(isa).rope(got.data(), n_tokens, n_heads, head_dim, rotary_dim, positions,
                                 inv_freq.data(), layout, scratch.data());
          expect_close(got, want, 0.0f, 1e-6f, "rope " + what);
        }
      }
    }
  }
}

// Bound: 1e-5 |ref| + 1e-7; exp is within a few ulp, the sum's order differs.
TEST(CpuKernels, SoftmaxMatchesReference) {
  for (Isa isa : simd_isas()) {
    for (int64_t n : {1, 7, 33, 100, 257}) {
      for (float range : {1.0f, 30.0f}) {
        const int64_t rows = 3;
        const auto x =
            random_floats(static_cast<size_t>(rows * n), -range, range, static_cast<uint32_t>(n));
        std::vector<float> want = x, got = x;
        ref_table().softmax(want.data(), rows, n);
        kernel_table(isa).softmax(got.data(), rows, n);
        expect_close(got, want, 1e-5f, 1e-7f,
                     std::string("softmax ") + isa_name(isa) + " n=" + std::to_string(n));
      }
    }
  }
}

// Bound: 1e-5 |ref| + 1e-6 over x in [-30, 30] (through exp's under/overflow-prone range).
TEST(CpuKernels, ElementwiseMatchReference) {
  for (Isa isa : simd_isas()) {
    const KernelTable& simd = kernel_table(isa);
    for (int64_t n : {1, 7, 33, 100, 257, 1000}) {
      const std::string what = std::string(isa_name(isa)) + " n=" + std::to_string(n);
      const auto x = random_floats(static_cast<size_t>(n), -30.0f, 30.0f, static_cast<uint32_t>(n));
      const auto up =
          random_floats(static_cast<size_t>(n), -2.0f, 2.0f, static_cast<uint32_t>(n) + 1);
      std::vector<float> want = x, got = x;
      ref_table().silu(want.data(), n);
      simd.silu(got.data(), n);
      expect_close(got, want, 1e-5f, 1e-6f, "silu " + what);
      want = x, got = x;
      ref_table().silu_mul(want.data(), up.data(), n);
      simd.silu_mul(got.data(), up.data(), n);
      expect_close(got, want, 1e-5f, 1e-6f, "silu_mul " + what);
      want = x, got = x;
      ref_table().gelu_erf(want.data(), n);
      simd.gelu_erf(got.data(), n);
      expect_close(got, want, 1e-5f, 1e-6f, "gelu_erf " + what);
      want = x, got = x;
      ref_table().gelu_tanh(want.data(), n);
      simd.gelu_tanh(got.data(), n);
      expect_close(got, want, 1e-5f, 1e-6f, "gelu_tanh " + what);
      want = x, got = x;
      ref_table().gelu_quick(want.data(), n);
      simd.gelu_quick(got.data(), n);
      expect_close(got, want, 1e-5f, 1e-6f, "gelu_quick " + what);
      want = up, got = up;
      ref_table().add_scaled(want.data(), x.data(), -0.37f, n);
      simd.add_scaled(got.data(), x.data(), -0.37f, n);
      expect_close(got, want, 1e-6f, 1e-6f, "add_scaled " + what);
      want = x, got = x;
      ref_table().scale(want.data(), 0.125f, n);
      simd.scale(got.data(), 0.125f, n);
      EXPECT_EQ(got, want) << "scale " << what;
    }
  }
}

struct AttentionCase {
  int64_t head_dim, n_heads, n_kv_heads, n_tokens, n_past;
};

std::vector<AttentionCase> attention_cases() {
  std::vector<AttentionCase> cases;
  struct Heads {
    int64_t n_heads, n_kv_heads;
  };
  // GQA ratios 1, 2 and 7; head dims with and without a partial vector; contexts from one key
  // to past a thousand (many key blocks and chunks).
  for (int64_t head_dim : {24, 64, 80, 128}) {
    for (Heads hs : {Heads{3, 3}, Heads{4, 2}, Heads{7, 1}, Heads{14, 2}}) {
      for (int64_t n_tokens : {1, 3, 37}) {
        for (int64_t n_past : {0, 1, 17, 1003}) {
          if (n_tokens == 37 && n_past == 1003) continue;  // one such case below keeps CI fast
          cases.push_back({head_dim, hs.n_heads, hs.n_kv_heads, n_tokens, n_past});
        }
      }
    }
  }
  cases.push_back({64, 14, 2, 37, 1003});
  return cases;
}

// Bound: 1e-5 |ref| + 2e-6 (outputs are convex combinations of values in [-1, 1]), for the plan
// the backend uses, one item per KV head (no merge), and odd token blocks and key chunks (merges
// of chunks that straddle key blocks and causal ends).
TEST(CpuKernels, AttentionMatchesReference) {
  for (const AttentionCase& c : attention_cases()) {
    const std::string what =
        "head_dim=" + std::to_string(c.head_dim) + " heads=" + std::to_string(c.n_heads) + "/" +
        std::to_string(c.n_kv_heads) + " tokens=" + std::to_string(c.n_tokens) +
        " past=" + std::to_string(c.n_past);
    const int64_t n_ctx = c.n_past + c.n_tokens;
    const int64_t cache_rows = n_ctx + 2;  // the cache may hold extra rows
    const uint32_t seed = static_cast<uint32_t>(c.head_dim * 1000 + c.n_tokens * 100 + c.n_past);
    const auto q =
        random_floats(static_cast<size_t>(c.n_tokens * c.n_heads * c.head_dim), -2.0f, 2.0f, seed);
    const auto k_rows = random_floats(static_cast<size_t>(cache_rows * c.n_kv_heads * c.head_dim),
                                      -2.0f, 2.0f, seed + 1);
    // Keys past n_ctx are left NaN in their block: every kernel must mask them.
    const auto k = test::blocked_keys(k_rows, n_ctx, c.n_kv_heads, c.head_dim);
    const auto v = random_floats(k_rows.size(), -1.0f, 1.0f, seed + 2);
    const AttentionShape shape{c.n_tokens,   c.n_past,   c.n_heads,
                               c.n_kv_heads, c.head_dim, 1.0f / std::sqrt(float(c.head_dim))};
    std::vector<float> want(q.size());
    run_attention_serial(ref_table().attention, plan_attention(shape, c.n_tokens, n_ctx), q.data(),
                         k.data(), v.data(), want.data());
    for (const AttentionPlan& plan :
         {plan_attention(shape), plan_attention(shape, c.n_tokens, n_ctx),
          plan_attention(shape, 5, 37)}) {
      const std::string how = what + " token_block=" + std::to_string(plan.token_block) +
                              " key_chunk=" + std::to_string(plan.key_chunk);
      std::vector<float> got(q.size());
      run_attention_serial(ref_table().attention, plan, q.data(), k.data(), v.data(), got.data());
      expect_close(got, want, 1e-5f, 2e-6f, "scalar attention " + how);
      for (Isa isa : simd_isas()) {
        run_attention_serial(kernel_table(isa).attention, plan, q.data(), k.data(), v.data(),
                             got.data());
        expect_close(got, want, 1e-5f, 2e-6f, std::string(isa_name(isa)) + " attention " + how);
      }
    }
  }
}

// The f16 KV cache: each element is widened exactly, so the reference over the f16 cache equals
// the reference over a float32 cache of the same (rounded) values bit for bit, and the SIMD
// kernels stay within the float32 bound of it.
TEST(CpuKernels, AttentionOverF16CacheMatchesReference) {
  for (const AttentionCase& c : attention_cases()) {
    if (c.head_dim == 80 || (c.n_past == 1003 && c.n_tokens != 1)) continue;  // keep CI fast
    const std::string what =
        "head_dim=" + std::to_string(c.head_dim) + " heads=" + std::to_string(c.n_heads) + "/" +
        std::to_string(c.n_kv_heads) + " tokens=" + std::to_string(c.n_tokens) +
        " past=" + std::to_string(c.n_past);
    const int64_t n_ctx = c.n_past + c.n_tokens;
    const uint32_t seed = static_cast<uint32_t>(c.head_dim * 1000 + c.n_tokens * 100 + c.n_past);
    const auto q =
        random_floats(static_cast<size_t>(c.n_tokens * c.n_heads * c.head_dim), -2.0f, 2.0f, seed);
    auto k_rows = random_floats(static_cast<size_t>(n_ctx * c.n_kv_heads * c.head_dim), -2.0f, 2.0f,
                                seed + 1);
    auto v = random_floats(k_rows.size(), -1.0f, 1.0f, seed + 2);
    std::vector<uint16_t> v16(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      v16[i] = f32_to_f16(v[i]);
      v[i] = f16_to_f32(v16[i]);
      k_rows[i] = f16_to_f32(f32_to_f16(k_rows[i]));
    }
    const auto k16 = test::blocked_keys_f16(k_rows, n_ctx, c.n_kv_heads, c.head_dim);
    const auto k32 = test::blocked_keys(k_rows, n_ctx, c.n_kv_heads, c.head_dim);
    const AttentionShape shape{c.n_tokens,   c.n_past,   c.n_heads,
                               c.n_kv_heads, c.head_dim, 1.0f / std::sqrt(float(c.head_dim))};
    std::vector<float> want(q.size()), got(q.size());
    run_attention_serial(ref_table().attention, plan_attention(shape, c.n_tokens, n_ctx), q.data(),
                         k32.data(), v.data(), want.data());
    for (const AttentionPlan& plan : {plan_attention(shape), plan_attention(shape, 5, 37)}) {
      const std::string how = what + " key_chunk=" + std::to_string(plan.key_chunk);
      std::vector<float> ref32(q.size());
      run_attention_serial(ref_table().attention, plan, q.data(), k32.data(), v.data(),
                           ref32.data());
      run_attention_serial(ref_table().attention_f16, plan, q.data(), k16.data(), v16.data(),
                           got.data());
      EXPECT_EQ(0, std::memcmp(got.data(), ref32.data(), got.size() * 4)) << "scalar f16 " << how;
      for (Isa isa : simd_isas()) {
        run_attention_serial(kernel_table(isa).attention_f16, plan, q.data(), k16.data(),
                             v16.data(), got.data());
        expect_close(got, want, 1e-5f, 2e-6f, std::string(isa_name(isa)) + " f16 attention " + how);
      }
    }
  }
}

}  // namespace
}  // namespace af::cpu
