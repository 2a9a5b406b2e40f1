#include "backend/cpu/thread_pool.hpp"

#include "af/core/error.hpp"

namespace af::cpu {
namespace {

// A caller waiting for the last chunks of its op spins this long (about 250 us) before sleeping:
// the chunks are in flight and it needs their results next, so a condition-variable wake-up
// (tens of microseconds) would be pure delay.
constexpr int kSpinIterations = 20000;
// An idle worker spins only this long (about 30 us) for the next op before sleeping. Decode's
// back-to-back ops come well within it; a longer gap (a token's logits rules, a model's serial
// work, or a caller the OS took off its core on a busy machine) used to cost up to 250 us of
// spinning per gap: 6-10% of a Whisper transcription's CPU time. A late worker only delays
// nobody: the caller claims the chunks it has not taken.
constexpr int kIdleSpinIterations = 2500;
// Chunks per thread: enough to even out uneven tasks (causal attention rows grow with position)
// and late starters, few enough that claiming stays cheap.
constexpr int64_t kChunksPerThread = 4;
constexpr int64_t kMaxChunks = 0xffff;  // the chunk fields of claim_ are 16 bits

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

inline uint64_t next_of(uint64_t c) { return (c >> 16) & 0xffff; }
inline uint64_t count_of(uint64_t c) { return c & 0xffff; }
inline bool has_work(uint64_t c) { return next_of(c) < count_of(c); }

}  // namespace

ThreadPool::ThreadPool(int num_threads) {
  AF_CHECK(num_threads >= 0, ErrorCode::kInvalidArgument, "cpu",
           "num_threads must be >= 0 (0 = hardware concurrency), got ", num_threads);
  if (num_threads == 0) num_threads = static_cast<int>(std::thread::hardware_concurrency());
  num_threads_ = num_threads > 0 ? num_threads : 1;
  workers_.reserve(static_cast<size_t>(num_threads_ - 1));
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::run_chunks() {
  uint64_t c = claim_.load(std::memory_order_acquire);
  while (has_work(c)) {
    // Acquire on success: the job fields written before the job was published are visible.
    if (!claim_.compare_exchange_weak(c, c + (uint64_t{1} << 16), std::memory_order_acquire,
                                      std::memory_order_acquire)) {
      continue;  // c now holds the current value
    }
    const int64_t begin = chunk_begin(static_cast<int64_t>(next_of(c)));
    const int64_t end = chunk_begin(static_cast<int64_t>(next_of(c)) + 1);
    try {
      job_fn_(job_ctx_, begin, end);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    const int64_t n_chunks = static_cast<int64_t>(count_of(c));
    if (chunks_done_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_chunks) {
      std::lock_guard<std::mutex> lock(mutex_);  // the caller may be asleep on done_cv_
      done_cv_.notify_all();
    }
    c = claim_.load(std::memory_order_acquire);
  }
}

void ThreadPool::run(int64_t n_tasks, TaskFn fn, void* ctx) {
  if (n_tasks <= 0) return;
  if (num_threads_ == 1 || n_tasks == 1) {
    fn(ctx, 0, n_tasks);
    return;
  }
  std::lock_guard<std::mutex> submit(submit_mutex_);
  int64_t n_chunks = int64_t{num_threads_} * kChunksPerThread;
  if (n_chunks > kMaxChunks) n_chunks = kMaxChunks;
  if (n_chunks > n_tasks) n_chunks = n_tasks;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_fn_ = fn;
    job_ctx_ = ctx;
    job_base_ = n_tasks / n_chunks;
    job_longer_ = n_tasks % n_chunks;
    error_ = nullptr;
    chunks_done_.store(0, std::memory_order_relaxed);
    const uint64_t generation = (claim_.load(std::memory_order_relaxed) >> 32) + 1;
    // Release: whoever claims a chunk of this job also sees the fields above.
    claim_.store((generation << 32) | static_cast<uint64_t>(n_chunks), std::memory_order_release);
  }
  wake_.notify_all();
  run_chunks();
  for (int i = 0; i < kSpinIterations && chunks_done_.load(std::memory_order_acquire) < n_chunks;
       ++i) {
    cpu_relax();
  }
  std::exception_ptr error;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    done_cv_.wait(lock, [&] { return chunks_done_.load(std::memory_order_acquire) == n_chunks; });
    error = error_;
    error_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

void ThreadPool::worker_loop() {
  for (;;) {
    for (int i = 0; i < kIdleSpinIterations && !has_work(claim_.load(std::memory_order_relaxed));
         ++i) {
      cpu_relax();
    }
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || has_work(claim_.load(std::memory_order_relaxed)); });
      if (stop_) return;
    }
    run_chunks();
  }
}

}  // namespace af::cpu
