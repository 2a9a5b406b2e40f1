// The scalar reference kernels (the oracle of test_cpu_kernels.cpp) on hand-computed cases.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backend/cpu/dispatch.hpp"
#include "backend/cpu/kernels/attention_plan.hpp"
#include "key_cache_test_util.hpp"

namespace af::cpu {
namespace {

const KernelTable& ref() { return kernel_table(Isa::kScalar); }

TEST(CpuReference, MatmulWithBias) {
  const float x[] = {1, 2, -1, 0.5f};     // [2, 2]
  const float w[] = {3, 4, 5, 6, -1, 1};  // [3, 2]
  const float bias[] = {0.5f, 0, -2};
  float y[6] = {};
  ref().matmul[0](x, 2, 2, w, bias, 3, 0, 3, y);
  const float want[] = {11.5f, 17, -1, -0.5f, -2, -0.5f};
  for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(y[i], want[i]) << i;
}

TEST(CpuReference, SoftmaxOfZeroAndLn2) {
  float x[] = {0.0f, std::log(2.0f)};
  ref().softmax(x, 1, 2);
  EXPECT_NEAR(x[0], 1.0f / 3.0f, 1e-7f);
  EXPECT_NEAR(x[1], 2.0f / 3.0f, 1e-7f);
}

TEST(CpuReference, RmsNormAndLayerNorm) {
  const float x[] = {3, 4};
  const float w[] = {1, 2};
  const float b[] = {0.5f, -0.5f};
  float y[2];
  ref().rms_norm(x, w, 1, 2, 0.0f, y);  // rms = sqrt(12.5)
  EXPECT_NEAR(y[0], 3 / std::sqrt(12.5f), 1e-6f);
  EXPECT_NEAR(y[1], 8 / std::sqrt(12.5f), 1e-6f);
  ref().layer_norm(x, w, b, 1, 2, 0.0f, y);  // mean 3.5, std 0.5
  EXPECT_NEAR(y[0], -1 + 0.5f, 1e-6f);
  EXPECT_NEAR(y[1], 2 - 0.5f, 1e-6f);
}

// A quarter turn maps each pair (a, b) to (-b, a); inv_freq 0 leaves its pair alone.
TEST(CpuReference, RopeRotatesByKnownAngles) {
  const float inv_freq[] = {static_cast<float>(M_PI / 2), 0.0f};
  const int32_t position[] = {1};
  std::vector<float> scratch(12);
  float half[] = {1, 2, 3, 4};  // pairs (0, 2) and (1, 3)
  ref().rope(half, 1, 1, 4, 4, position, inv_freq, RopeLayout::kHalf, scratch.data());
  EXPECT_NEAR(half[0], -3, 1e-6f);
  EXPECT_NEAR(half[2], 1, 1e-6f);
  EXPECT_FLOAT_EQ(half[1], 2);
  EXPECT_FLOAT_EQ(half[3], 4);
  float inter[] = {1, 2, 3, 4};  // pairs (0, 1) and (2, 3)
  ref().rope(inter, 1, 1, 4, 4, position, inv_freq, RopeLayout::kInterleaved, scratch.data());
  EXPECT_NEAR(inter[0], -2, 1e-6f);
  EXPECT_NEAR(inter[1], 1, 1e-6f);
  EXPECT_FLOAT_EQ(inter[2], 3);
  EXPECT_FLOAT_EQ(inter[3], 4);
  // Position 2 turns by pi; dims past rotary_dim stay untouched.
  const int32_t pos2[] = {2};
  float partial[] = {1, 2, 3, 4, 5, 6};  // head_dim 6, rotary_dim 2: pair (0, 1)
  ref().rope(partial, 1, 1, 6, 2, pos2, inv_freq, RopeLayout::kHalf, scratch.data());
  EXPECT_NEAR(partial[0], -1, 1e-6f);
  EXPECT_NEAR(partial[1], -2, 1e-6f);
  for (int i = 2; i < 6; ++i) EXPECT_FLOAT_EQ(partial[i], float(i + 1));
}

TEST(CpuReference, Activations) {
  float x[] = {1.0f};
  ref().silu(x, 1);
  EXPECT_NEAR(x[0], 0.7310585786f, 1e-7f);
  x[0] = 1.0f;
  ref().gelu_erf(x, 1);
  EXPECT_NEAR(x[0], 0.8413447461f, 1e-7f);
  x[0] = 1.0f;
  ref().gelu_tanh(x, 1);
  EXPECT_NEAR(x[0], 0.8411919906f, 1e-7f);
  float g[] = {2.0f};
  const float up[] = {3.0f};
  ref().silu_mul(g, up, 1);
  EXPECT_NEAR(g[0], 3 * 2 / (1 + std::exp(-2.0f)), 1e-6f);
  float y[] = {1, 2};
  const float a[] = {4, 8};
  ref().add_scaled(y, a, 0.5f, 2);
  EXPECT_FLOAT_EQ(y[0], 3);
  EXPECT_FLOAT_EQ(y[1], 6);
  ref().scale(y, 2, 2);
  EXPECT_FLOAT_EQ(y[1], 12);
}

TEST(CpuReference, AttentionWithOneKeyReturnsValue) {
  const float q[] = {0.3f, -2, 5, 1};  // one token, 2 heads of dim 2, sharing 1 KV head
  const auto k = test::blocked_keys({7, -1}, 1, 1, 2);
  const float v[] = {0.25f, -4};
  float out[4];
  run_attention_serial(ref().attention, plan_attention(AttentionShape{1, 0, 2, 1, 2, 0.7f}), q,
                       k.data(), v, out);
  for (int h = 0; h < 2; ++h) {
    EXPECT_FLOAT_EQ(out[2 * h], 0.25f);
    EXPECT_FLOAT_EQ(out[2 * h + 1], -4);
  }
}

// Two keys with scores 0 and ln 2 weight the values 1/3 and 2/3; the causal mask hides the
// second key from the first token.
TEST(CpuReference, AttentionIsCausalAndWeighted) {
  const float q[] = {1, 0, 1, 0};                                         // 2 tokens, 1 head, dim 2
  const auto k = test::blocked_keys({0, 5, std::log(2.0f), 5}, 2, 1, 2);  // q·k = 0 and ln 2
  const float v[] = {3, 0, 0, 3};
  float out[4];
  run_attention_serial(ref().attention, plan_attention(AttentionShape{2, 0, 1, 1, 2, 1.0f}), q,
                       k.data(), v, out);
  EXPECT_FLOAT_EQ(out[0], 3);
  EXPECT_FLOAT_EQ(out[1], 0);
  EXPECT_NEAR(out[2], 1, 1e-6f);
  EXPECT_NEAR(out[3], 2, 1e-6f);
}

// The same two keys in separate chunks: the merge rescales the chunks' states to one softmax.
TEST(CpuReference, AttentionMergesKeyChunks) {
  const float q[] = {1, 0, 1, 0};
  const auto k = test::blocked_keys({0, 5, std::log(2.0f), 5}, 2, 1, 2);
  const float v[] = {3, 0, 0, 3};
  float out[4];
  const AttentionPlan plan = plan_attention(AttentionShape{2, 0, 1, 1, 2, 1.0f}, 1, 1);
  EXPECT_EQ(plan.n_key_chunks, 2);
  run_attention_serial(ref().attention, plan, q, k.data(), v, out);
  EXPECT_FLOAT_EQ(out[0], 3);
  EXPECT_FLOAT_EQ(out[1], 0);
  EXPECT_NEAR(out[2], 1, 1e-6f);
  EXPECT_NEAR(out[3], 2, 1e-6f);
}

// The key cache layout: positions in blocks of kKeyBlock, per KV head head_dim rows of the block's
// keys; storing rows in pieces (as prefill chunks and decode steps do) lands them where
// key_offset says, and the size rounds up to whole blocks.
TEST(KeyCache, StoreKeysFollowsTheBlockedLayout) {
  const int64_t n_kv = 3, hd = 5, n = 37;  // 3 blocks, the last partial
  EXPECT_EQ(key_cache_floats(n, n_kv, hd), 48 * n_kv * hd);
  EXPECT_EQ(key_cache_floats(0, n_kv, hd), 0);
  EXPECT_EQ(key_cache_floats(16, n_kv, hd), 16 * n_kv * hd);
  EXPECT_EQ(key_offset(17, 2, 4, n_kv, hd), ((1 * n_kv + 2) * hd + 4) * kKeyBlock + 1);
  EXPECT_EQ(key_block_offset(17, 2, n_kv, hd), key_offset(16, 2, 0, n_kv, hd));
  std::vector<float> rows(static_cast<size_t>(n * n_kv * hd));
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<float>(i);
  std::vector<float> cache(static_cast<size_t>(key_cache_floats(n, n_kv, hd)), -1.0f);
  store_keys(cache.data(), rows.data(), 20, 0, n_kv, hd);  // a prefill chunk
  for (int64_t pos = 20; pos < n; ++pos) {                 // then one position at a time
    store_keys(cache.data(), rows.data() + pos * n_kv * hd, 1, pos, n_kv, hd);
  }
  int64_t stored = 0;
  for (int64_t pos = 0; pos < n; ++pos) {
    for (int64_t h = 0; h < n_kv; ++h) {
      for (int64_t d = 0; d < hd; ++d) {
        ASSERT_EQ(cache[static_cast<size_t>(key_offset(pos, h, d, n_kv, hd))],
                  rows[static_cast<size_t>((pos * n_kv + h) * hd + d)])
            << pos << " " << h << " " << d;
        ++stored;
      }
    }
  }
  // Nothing else was written: the slots of positions 37 .. 47 keep their fill.
  int64_t untouched = 0;
  for (float f : cache) untouched += f == -1.0f;
  EXPECT_EQ(untouched, static_cast<int64_t>(cache.size()) - stored);
}

}  // namespace
}  // namespace af::cpu
