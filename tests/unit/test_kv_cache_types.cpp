// KV caches of f32, f16 and q8_0 keys and values (af/backend/key_cache.hpp): the q8_0 layouts
// hold llama.cpp's q8_0 bytes, and every ISA's attention kernel reads each combination of types
// directly, within the float32 bound of the scalar reference over the same stored values.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "af/backend/key_cache.hpp"
#include "af/backend/quant.hpp"
#include "af/core/half.hpp"
#include "af/nn/attention.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/dispatch.hpp"
#include "backend/cpu/kernels/attention_plan.hpp"
#include "key_cache_test_util.hpp"
#include "test_util.hpp"

namespace af::cpu {
namespace {

using test::random_floats;

const DType kTypes[] = {DType::F32, DType::F16, DType::Q8_0};

int slot(DType t) { return t == DType::F32 ? 0 : t == DType::F16 ? 1 : 2; }

// A cache of n_ctx positions of `type`, keys or values, stored from rows; the key slots past
// n_ctx in its last block hold bytes 0x7C (f16 0x7C7C is a NaN, f32 0x7C7C7C7C a huge value):
// the kernels must mask them, not read them.
std::vector<uint8_t> make_cache(DType type, bool keys, const std::vector<float>& rows,
                                int64_t n_ctx, int64_t n_kv_heads, int64_t head_dim) {
  const int64_t bytes = keys ? key_cache_bytes(type, n_ctx, n_kv_heads, head_dim)
                             : n_ctx * value_row_bytes(type, n_kv_heads, head_dim);
  std::vector<uint8_t> cache(static_cast<size_t>(bytes), 0x7C);
  if (keys) {
    store_keys_as(type, cache.data(), rows.data(), n_ctx, 0, n_kv_heads, head_dim);
  } else {
    store_values_as(type, cache.data(), rows.data(), n_ctx, 0, n_kv_heads, head_dim);
  }
  return cache;
}

TEST(KvCacheQ8, ValueRowsHoldLlamaCppQ8_0Bytes) {
  // head_dim a multiple of 32: each head's blocks are exactly ggml's q8_0 row of its values.
  const int64_t n_kv_heads = 3, head_dim = 64, n = 5;
  const auto rows = random_floats(static_cast<size_t>(n * n_kv_heads * head_dim), -3, 3, 1);
  const auto cache = make_cache(DType::Q8_0, false, rows, n, n_kv_heads, head_dim);
  std::vector<uint8_t> want(
      static_cast<size_t>(value_row_bytes(DType::Q8_0, n_kv_heads, head_dim)));
  for (int64_t t = 0; t < n; ++t) {
    af::quant::quantize_row(DType::Q8_0, rows.data() + t * n_kv_heads * head_dim, want.data(),
                            n_kv_heads * head_dim);
    EXPECT_EQ(0, std::memcmp(want.data(), cache.data() + t * want.size(), want.size()))
        << "position " << t;
  }
}

TEST(KvCacheQ8, StoredElementsReadBackWithinHalfAStepAndTheScaleRounding) {
  // Odd head_dim: the last block of each head is short (40 = 32 + 8).
  const int64_t n_kv_heads = 2, head_dim = 40, n = 21;
  const auto rows = random_floats(static_cast<size_t>(n * n_kv_heads * head_dim), -2, 2, 2);
  for (bool keys : {true, false}) {
    const auto cache = make_cache(DType::Q8_0, keys, rows, n, n_kv_heads, head_dim);
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t h = 0; h < n_kv_heads; ++h) {
        for (int64_t d = 0; d < head_dim; ++d) {
          const float x = rows[static_cast<size_t>((t * n_kv_heads + h) * head_dim + d)];
          // Half a step of d = max|x| / 127, plus the f16 rounding of d (2^-11 relative) times |q|
          // <= 127.
          float amax = 0;
          const int64_t b0 = d / kKvQ8Block * kKvQ8Block;
          for (int64_t i = b0; i < std::min(b0 + kKvQ8Block, head_dim); ++i) {
            amax = std::max(
                amax, std::fabs(rows[static_cast<size_t>((t * n_kv_heads + h) * head_dim + i)]));
          }
          const float got =
              keys ? cached_key(cache.data(), DType::Q8_0, t, h, d, n_kv_heads, head_dim)
                   : cached_value(cache.data(), DType::Q8_0, t, h, d, n_kv_heads, head_dim);
          ASSERT_LE(std::fabs(got - x), (0.5f + 127.0f / 2048.0f) * amax / 127.0f * 1.001f + 1e-7f)
              << (keys ? "key" : "value") << " t=" << t << " h=" << h << " d=" << d;
        }
      }
    }
  }
}

TEST(KvCacheQ8, BytesPerPositionCountEveryLayout) {
  // head_dim 64: f32 512 B of K + V per head, f16 256 B, q8_0 2 x 68 B (llama.cpp's 8.5 bits).
  EXPECT_EQ(nn::KvCache::bytes_per_position(DType::F32, DType::F32, 1, 64), 512);
  EXPECT_EQ(nn::KvCache::bytes_per_position(DType::F16, DType::F16, 1, 64), 256);
  EXPECT_EQ(nn::KvCache::bytes_per_position(DType::Q8_0, DType::Q8_0, 1, 64), 136);
  EXPECT_EQ(nn::KvCache::bytes_per_position(DType::Q8_0, DType::F16, 2, 64), 2 * 68 + 256);
  nn::KvCache cache(2, 100, 2, 40, DType::Q8_0, DType::F32);
  EXPECT_EQ(cache.k_type(), DType::Q8_0);
  EXPECT_EQ(cache.v_type(), DType::F32);
  EXPECT_EQ(cache.bytes_per_position(), 2 * (40 + 2 * 2) + 2 * 40 * 4);
  try {
    nn::KvCache bad(1, 10, 1, 64, DType::F32, DType::Q4_0);
    FAIL() << "expected af::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("q4_0"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("values"), std::string::npos) << e.what();
  }
}

struct Case {
  int64_t head_dim, n_heads, n_kv_heads, n_tokens, n_past;
};

// Every K/V type combination, odd head dims (24: one short block; 40, 80: a short last block),
// decode and prefill, contexts inside one key block and across many (split into chunks).
// The scalar reference over the stored types equals the reference over a float32 cache of the
// values they read back, bit for bit; the SIMD kernels stay within the float32 bound of it.
TEST(KvCacheQ8, AttentionOverEveryCacheTypeMatchesReference) {
  const Case cases[] = {{24, 3, 3, 1, 0},  {40, 4, 2, 1, 17},   {64, 7, 1, 1, 300},
                        {80, 4, 2, 3, 17}, {128, 14, 2, 37, 5}, {40, 2, 1, 37, 130}};
  for (const Case& c : cases) {
    const int64_t n_ctx = c.n_past + c.n_tokens;
    const uint32_t seed = static_cast<uint32_t>(c.head_dim * 100 + c.n_past);
    const auto q =
        random_floats(static_cast<size_t>(c.n_tokens * c.n_heads * c.head_dim), -2, 2, seed);
    const auto k_rows =
        random_floats(static_cast<size_t>(n_ctx * c.n_kv_heads * c.head_dim), -2, 2, seed + 1);
    const auto v_rows = random_floats(k_rows.size(), -1, 1, seed + 2);
    const AttentionShape shape{c.n_tokens,   c.n_past,   c.n_heads,
                               c.n_kv_heads, c.head_dim, 1.0f / std::sqrt(float(c.head_dim))};
    for (DType kt : kTypes) {
      for (DType vt : kTypes) {
        const std::string what = std::string(name(kt)) + "/" + std::string(name(vt)) +
                                 " head_dim=" + std::to_string(c.head_dim) +
                                 " tokens=" + std::to_string(c.n_tokens) +
                                 " past=" + std::to_string(c.n_past);
        const auto kc = make_cache(kt, true, k_rows, n_ctx, c.n_kv_heads, c.head_dim);
        const auto vc = make_cache(vt, false, v_rows, n_ctx, c.n_kv_heads, c.head_dim);
        // The values the stored elements read back as, in a float32 cache.
        std::vector<float> k_back(k_rows.size()), v_back(v_rows.size());
        for (int64_t t = 0; t < n_ctx; ++t) {
          for (int64_t h = 0; h < c.n_kv_heads; ++h) {
            for (int64_t d = 0; d < c.head_dim; ++d) {
              const auto i = static_cast<size_t>((t * c.n_kv_heads + h) * c.head_dim + d);
              k_back[i] = cached_key(kc.data(), kt, t, h, d, c.n_kv_heads, c.head_dim);
              v_back[i] = cached_value(vc.data(), vt, t, h, d, c.n_kv_heads, c.head_dim);
            }
          }
        }
        const auto k32 = test::blocked_keys(k_back, n_ctx, c.n_kv_heads, c.head_dim);
        for (const AttentionPlan& plan : {plan_attention(shape), plan_attention(shape, 5, 37)}) {
          const std::string how = what + " key_chunk=" + std::to_string(plan.key_chunk);
          std::vector<float> want(q.size()), got(q.size());
          run_attention_serial(kernel_table(Isa::kScalar).attention, plan, q.data(), k32.data(),
                               v_back.data(), want.data());
          const AttentionKvFn ref = kernel_table(Isa::kScalar).attention_kv[slot(kt)][slot(vt)];
          run_attention_serial<void>(ref, plan, q.data(), kc.data(), vc.data(), got.data());
          ASSERT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * 4)) << "scalar " << how;
          for (Isa isa : supported_isas()) {
            if (isa == Isa::kScalar) continue;
            const AttentionKvFn fn = kernel_table(isa).attention_kv[slot(kt)][slot(vt)];
            run_attention_serial<void>(fn, plan, q.data(), kc.data(), vc.data(), got.data());
            for (size_t i = 0; i < got.size(); ++i) {
              ASSERT_LE(std::fabs(got[i] - want[i]), 2e-6f + 1e-5f * std::fabs(want[i]))
                  << isa_name(isa) << " " << how << " at " << i;
            }
          }
        }
      }
    }
  }
}

// The backend entry point (threads, chunk merges) over a q8_0 cache agrees with the kernel run
// serially, and an unsupported element type is refused by name.
TEST(KvCacheQ8, BackendAttentionKvRunsEveryType) {
  const int64_t n_tokens = 1, n_past = 700, n_heads = 8, n_kv = 2, hd = 64;
  const int64_t n_ctx = n_past + n_tokens;
  const auto q = random_floats(static_cast<size_t>(n_tokens * n_heads * hd), -1, 1, 5);
  const auto k_rows = random_floats(static_cast<size_t>(n_ctx * n_kv * hd), -1, 1, 6);
  const auto v_rows = random_floats(k_rows.size(), -1, 1, 7);
  const auto kc = make_cache(DType::Q8_0, true, k_rows, n_ctx, n_kv, hd);
  const auto vc = make_cache(DType::Q8_0, false, v_rows, n_ctx, n_kv, hd);
  const AttentionShape shape{n_tokens, n_past, n_heads, n_kv, hd, 0.125f};
  for (Isa isa : supported_isas()) {
    CpuBackend be({Device::cpu(), 2, isa_name(isa)});
    std::vector<float> got(q.size()), want(q.size());
    be.attention_kv(q.data(), {kc.data(), vc.data(), DType::Q8_0, DType::Q8_0}, n_tokens, n_past,
                    n_heads, n_kv, hd, 0.125f, got.data());
    run_attention_serial<void>(kernel_table(isa).attention_kv[2][2], plan_attention(shape),
                               q.data(), kc.data(), vc.data(), want.data());
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * 4)) << isa_name(isa);
    try {
      be.attention_kv(q.data(), {kc.data(), vc.data(), DType::Q4_0, DType::Q8_0}, n_tokens, n_past,
                      n_heads, n_kv, hd, 0.125f, got.data());
      FAIL() << "expected af::Error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("q4_0"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace af::cpu
