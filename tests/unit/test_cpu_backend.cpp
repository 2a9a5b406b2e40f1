// CpuBackend end to end: thread-count independence, agreement with the kernel tables, argument
// errors; and the thread pool on its own.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "af/core/error.hpp"
#include "af/core/half.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/thread_pool.hpp"
#include "key_cache_test_util.hpp"
#include "test_util.hpp"

namespace af::cpu {
namespace {

using test::random_floats;

// A [rows, cols] tensor of `dtype` holding `values` (rounded to the dtype).
Tensor make_tensor(DType dtype, int64_t rows, int64_t cols, const std::vector<float>& values) {
  Tensor t = Tensor::zeros(dtype, Shape{rows, cols});
  auto* f32 = reinterpret_cast<float*>(t.mutable_data());
  auto* half = reinterpret_cast<uint16_t*>(t.mutable_data());
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::F32) f32[i] = values[i];
    if (dtype == DType::F16) half[i] = f32_to_f16(values[i]);
    if (dtype == DType::BF16) half[i] = f32_to_bf16(values[i]);
  }
  return t;
}

template <class Fn>
void expect_code(ErrorCode code, const std::string& needle, Fn&& fn) {
  try {
    fn();
    ADD_FAILURE() << "expected af::Error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_EQ(e.component(), "cpu") << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// Runs every op once on `b` with sizes large enough to be split across threads, and returns all
// outputs concatenated.
std::vector<float> run_all_ops(Backend& b) {
  std::vector<float> out;
  auto append = [&](const std::vector<float>& v) { out.insert(out.end(), v.begin(), v.end()); };
  const int64_t k = 301, n = 517;
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    const Tensor w = make_tensor(dt, n, k, random_floats(static_cast<size_t>(n * k), -1, 1, 1));
    const auto bias = random_floats(static_cast<size_t>(n), -1, 1, 2);
    for (int64_t m : {1, 17}) {
      const auto x = random_floats(static_cast<size_t>(m * k), -1, 1, 3);
      std::vector<float> y(static_cast<size_t>(m * n));
      b.matmul(x.data(), m, w, bias.data(), y.data());
      append(y);
    }
    const int32_t ids[] = {0, 516, 7, 7};
    std::vector<float> e(4 * k);
    b.embedding(w, ids, 4, e.data());
    append(e);
  }
  const int64_t rows = 37, dim = 900;
  const auto x = random_floats(static_cast<size_t>(rows * dim), -3, 3, 4);
  const auto w = random_floats(static_cast<size_t>(dim), 0.5f, 1.5f, 5);
  std::vector<float> y(x.size());
  b.rms_norm(x.data(), w.data(), rows, dim, 1e-6f, y.data());
  append(y);
  b.layer_norm(x.data(), w.data(), w.data(), rows, dim, 1e-5f, y.data());
  append(y);
  y = x;
  b.softmax(y.data(), rows, dim);
  append(y);
  for (GeluKind kind : {GeluKind::kErf, GeluKind::kTanh}) {
    y = x;
    b.gelu(y.data(), static_cast<int64_t>(y.size()), kind);
    append(y);
  }
  y = x;
  b.silu(y.data(), static_cast<int64_t>(y.size()));
  append(y);
  y = x;
  b.silu_mul(y.data(), x.data(), static_cast<int64_t>(y.size()));
  b.add_scaled(y.data(), x.data(), 0.3f, static_cast<int64_t>(y.size()));
  b.scale(y.data(), 1.7f, static_cast<int64_t>(y.size()));
  append(y);
  // Attention + rope: 9 tokens after 20 cached, 6 heads over 2 KV heads of dim 64.
  const int64_t n_tokens = 9, n_past = 20, n_heads = 6, n_kv = 2, hd = 64;
  auto q = random_floats(static_cast<size_t>(n_tokens * n_heads * hd), -1, 1, 6);
  const auto k_rows = random_floats(static_cast<size_t>((n_past + n_tokens) * n_kv * hd), -1, 1, 7);
  const auto kc = test::blocked_keys(k_rows, n_past + n_tokens, n_kv, hd);
  const auto vc = random_floats(k_rows.size(), -1, 1, 8);
  std::vector<int32_t> pos(static_cast<size_t>(n_tokens));
  for (int64_t t = 0; t < n_tokens; ++t)
    pos[static_cast<size_t>(t)] = static_cast<int32_t>(n_past + t);
  std::vector<float> inv_freq(hd / 2);
  for (size_t i = 0; i < inv_freq.size(); ++i) inv_freq[i] = std::pow(1e4f, -2.0f * i / hd);
  b.rope(q.data(), n_tokens, n_heads, hd, hd, pos.data(), inv_freq.data(), RopeLayout::kHalf);
  append(q);
  std::vector<float> att(q.size());
  b.attention(q.data(), kc.data(), vc.data(), n_tokens, n_past, n_heads, n_kv, hd, 0.125f,
              att.data());
  append(att);
  // Decode after 1000 cached tokens (keys split into chunks, merged) and a 37-token chunk with
  // 7 query heads per KV head (several token blocks), head_dim 80 (a partial vector).
  struct AttentionCall {
    int64_t n_tokens, n_past, n_heads, n_kv, hd;
  };
  for (const AttentionCall& c :
       {AttentionCall{1, 1000, 14, 2, 64}, AttentionCall{37, 17, 14, 2, 80}}) {
    const auto cq = random_floats(static_cast<size_t>(c.n_tokens * c.n_heads * c.hd), -1, 1, 9);
    const auto ck_rows =
        random_floats(static_cast<size_t>((c.n_past + c.n_tokens) * c.n_kv * c.hd), -1, 1, 10);
    const auto ck = test::blocked_keys(ck_rows, c.n_past + c.n_tokens, c.n_kv, c.hd);
    const auto cv = random_floats(ck_rows.size(), -1, 1, 11);
    std::vector<float> co(cq.size());
    b.attention(cq.data(), ck.data(), cv.data(), c.n_tokens, c.n_past, c.n_heads, c.n_kv, c.hd,
                0.125f, co.data());
    append(co);
    // The same over an f16 cache.
    const auto ck16 = test::blocked_keys_f16(ck_rows, c.n_past + c.n_tokens, c.n_kv, c.hd);
    std::vector<uint16_t> cv16(cv.size());
    for (size_t i = 0; i < cv.size(); ++i) cv16[i] = f32_to_f16(cv[i]);
    b.attention_f16(cq.data(), ck16.data(), cv16.data(), c.n_tokens, c.n_past, c.n_heads, c.n_kv,
                    c.hd, 0.125f, co.data());
    append(co);
  }
  return out;
}

TEST(CpuBackend, ResultsDoNotDependOnThreadCount) {
  for (Isa isa : supported_isas()) {
    CpuBackend one({Device::cpu(), 1, isa_name(isa)});
    CpuBackend two({Device::cpu(), 2, isa_name(isa)});
    CpuBackend three({Device::cpu(), 3, isa_name(isa)});
    EXPECT_EQ(one.num_threads(), 1);
    EXPECT_EQ(two.num_threads(), 2);
    const auto a = run_all_ops(one);
    const auto b = run_all_ops(two);
    const auto c = run_all_ops(three);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << isa_name(isa);
    EXPECT_EQ(0, std::memcmp(a.data(), c.data(), a.size() * sizeof(float))) << isa_name(isa);
  }
}

// Every ISA's backend agrees with the scalar one within the loosest kernel bound.
TEST(CpuBackend, IsasAgree) {
  CpuBackend scalar({Device::cpu(), 2, "scalar"});
  const auto want = run_all_ops(scalar);
  for (Isa isa : supported_isas()) {
    CpuBackend b({Device::cpu(), 2, isa_name(isa)});
    const auto got = run_all_ops(b);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_NEAR(got[i], want[i], 1e-4f + 1e-5f * std::fabs(want[i])) << isa_name(isa) << " " << i;
    }
  }
}

TEST(CpuBackend, NamesAndFactory) {
  auto best = make_backend(BackendOptions{});
  EXPECT_EQ(best->name(), std::string("cpu/") + isa_name(best_isa()));
  EXPECT_EQ(best->device(), Device::cpu());
  EXPECT_GE(best->num_threads(), 1);
  EXPECT_EQ(make_backend({Device::cpu(), 1, "scalar"})->name(), "cpu/scalar");
  expect_code(ErrorCode::kInvalidArgument, "avx9000", [] {
    make_backend({Device::cpu(), 1, "avx9000"});
  });
  expect_code(ErrorCode::kInvalidArgument, "num_threads", [] {
    make_backend({Device::cpu(), -2, ""});
  });
  if (!isa_supported(Isa::kAvx512)) {
    expect_code(ErrorCode::kUnsupported, "avx512", [] {
      make_backend({Device::cpu(), 1, "avx512"});
    });
  }
}

TEST(CpuBackend, EmbeddingConvertsRows) {
  CpuBackend b({Device::cpu(), 2, ""});
  const auto values = random_floats(5 * 9, -2, 2, 11);
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    const Tensor table = make_tensor(dt, 5, 9, values);
    const Tensor f32 = table.to_f32();
    const int32_t ids[] = {4, 0, 2};
    std::vector<float> y(27);
    b.embedding(table, ids, 3, y.data());
    for (int r = 0; r < 3; ++r) {
      EXPECT_EQ(0, std::memcmp(y.data() + r * 9, f32.as<float>() + ids[r] * 9, 36)) << r;
    }
  }
}

TEST(CpuBackend, RejectsBadArguments) {
  CpuBackend b({Device::cpu(), 2, ""});
  std::vector<float> buf(64);
  const Tensor iq2 = Tensor::zeros(DType::IQ2_XXS, Shape{2, 256});
  expect_code(ErrorCode::kUnsupported, "iq2_xxs",
              [&] { b.matmul(buf.data(), 1, iq2, nullptr, buf.data()); });
  const Tensor i32 = Tensor::zeros(DType::I32, Shape{2, 2});
  expect_code(ErrorCode::kUnsupported, "i32", [&] { b.embedding(i32, nullptr, 0, buf.data()); });
  const Tensor w3 = Tensor::zeros(DType::F32, Shape{2, 2, 2});
  expect_code(ErrorCode::kInvalidArgument, "2-D",
              [&] { b.matmul(buf.data(), 1, w3, nullptr, buf.data()); });
  const Tensor w = Tensor::zeros(DType::F32, Shape{4, 4});
  expect_code(ErrorCode::kInvalidArgument, "x is null",
              [&] { b.matmul(nullptr, 1, w, nullptr, buf.data()); });
  expect_code(ErrorCode::kInvalidArgument, "m must be >= 0",
              [&] { b.matmul(buf.data(), -1, w, nullptr, buf.data()); });
  const int32_t ids[] = {1, 4};
  expect_code(ErrorCode::kInvalidArgument, "id 4 at index 1 is out of range for vocab size 4",
              [&] { b.embedding(w, ids, 2, buf.data()); });
  const int32_t neg[] = {-1};
  expect_code(ErrorCode::kInvalidArgument, "id -1", [&] { b.embedding(w, neg, 1, buf.data()); });
  expect_code(ErrorCode::kInvalidArgument, "n_kv_heads", [&] {
    b.attention(buf.data(), buf.data(), buf.data(), 1, 0, 3, 2, 4, 1, buf.data());
  });
  expect_code(ErrorCode::kInvalidArgument, "rotary_dim", [&] {
    const int32_t p[] = {0};
    b.rope(buf.data(), 1, 1, 8, 3, p, buf.data(), RopeLayout::kHalf);
  });
  expect_code(ErrorCode::kInvalidArgument, "dim must be > 0",
              [&] { b.rms_norm(buf.data(), buf.data(), 1, 0, 1e-6f, buf.data()); });
  // Empty work is fine.
  b.matmul(nullptr, 0, w, nullptr, nullptr);
  b.silu(nullptr, 0);
}

TEST(CpuThreadPool, CoversEveryTaskOnce) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    for (int64_t n : {1, 2, 5, 14, 29, 1000}) {
      for (int rep = 0; rep < 50; ++rep) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        pool.parallel_for(n, [&](int64_t b, int64_t e) {
          EXPECT_LT(b, e);  // no empty chunks
          for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
        });
        for (auto& h : hits) ASSERT_EQ(h.load(), 1);
      }
    }
    pool.parallel_for(0, [](int64_t, int64_t) { FAIL() << "no tasks, no calls"; });
  }
  EXPECT_GE(ThreadPool(0).num_threads(), 1);
}

// A worker with nothing to do sleeps after a short spin: 100 ops 2 ms apart cost a few ms of
// CPU in all (the workers used to spin ~250 us after every op, 25 ms here). Timing-based: the
// bound leaves 3x the expected time.
TEST(CpuThreadPool, IdleWorkersSleepSoon) {
  ThreadPool pool(2);
  const auto cpu_seconds = [] {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
  };
  std::atomic<int64_t> done{0};
  const double before = cpu_seconds();
  for (int op = 0; op < 100; ++op) {
    pool.parallel_for(8, [&](int64_t b, int64_t e) { done.fetch_add(e - b); });
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  const double spent = cpu_seconds() - before;
  EXPECT_EQ(done.load(), 800);
  EXPECT_LT(spent, 0.010) << "CPU seconds for 100 ops with 2 ms idle gaps";
}

TEST(CpuThreadPool, RethrowsTaskExceptions) {
  ThreadPool pool(2);
  EXPECT_THROW(pool.parallel_for(10,
                                 [](int64_t b, int64_t) {
                                   if (b > 0) throw std::runtime_error("late half");
                                 }),
               std::runtime_error);
  // The pool stays usable afterwards.
  std::atomic<int64_t> sum{0};
  pool.parallel_for(100, [&](int64_t b, int64_t e) { sum += e - b; });
  EXPECT_EQ(sum.load(), 100);
}

}  // namespace
}  // namespace af::cpu
