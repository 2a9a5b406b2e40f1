#pragma once
// A persistent pool: workers are created once and woken per parallel_for, and the calling thread
// takes a share of the work, so an op costs a wake-up rather than thread creation.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace af::cpu {

class ThreadPool {
 public:
  // num_threads counts the caller; 0 means std::thread::hardware_concurrency(). Throws
  // af::Error(kInvalidArgument) for negative counts.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Calls fn(begin, end) over disjoint contiguous ranges covering [0, n_tasks). The ranges are
  // a few chunks per thread, claimed first come first served (the caller included), so a worker
  // the OS has not scheduled yet delays nobody: the caller just runs its chunks. Which thread
  // runs a range therefore varies, and fn's results must not depend on it. Blocks until every
  // range is done and rethrows the first exception any of them threw. Calls from several threads
  // are serialised; fn must not call parallel_for on the same pool.
  template <class Fn>
  void parallel_for(int64_t n_tasks, Fn&& fn) {
    run(
        n_tasks, [](void* ctx, int64_t b, int64_t e) { (*static_cast<Fn*>(ctx))(b, e); },
        const_cast<void*>(static_cast<const void*>(&fn)));
  }

 private:
  using TaskFn = void (*)(void* ctx, int64_t begin, int64_t end);
  void run(int64_t n_tasks, TaskFn fn, void* ctx);
  void worker_loop();
  // Claims and runs chunks of the current job until none is left.
  void run_chunks();

  int num_threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex submit_mutex_;  // one parallel_for at a time
  std::mutex mutex_;         // guards sleeping, stop_ and error_
  std::condition_variable wake_;
  std::condition_variable done_cv_;
  bool stop_ = false;
  std::exception_ptr error_;
  // The current job. Written by the caller only while no chunk is claimed; a thread reads it
  // only while holding a claim, which keeps the job alive until the claim's chunk is done.
  TaskFn job_fn_ = nullptr;
  void* job_ctx_ = nullptr;
  // Chunk c holds job_base_ + 1 tasks for c < job_longer_, job_base_ after: the longer chunks
  // go first, so the threads' last claims are the short ones and they finish together (14
  // tasks on 2 threads: chunks 2,2,2,2,2,2,1,1, not 2,2,2,2,2,2,2 split 4 to 3).
  int64_t job_base_ = 0;
  int64_t job_longer_ = 0;
  int64_t chunk_begin(int64_t c) const {
    return c * job_base_ + (c < job_longer_ ? c : job_longer_);
  }
  // generation (32 bits) | next unclaimed chunk (16) | chunk count (16). The generation makes a
  // claim attempt on a finished job fail even if the same chunk numbers come round again.
  std::atomic<uint64_t> claim_{0};
  std::atomic<int64_t> chunks_done_{0};
};

}  // namespace af::cpu
