// libFuzzer target: any byte string as a chat template must parse and render with a small fixed
// context or raise af::Error; crashes, hangs, leaks, sanitizer reports and other exception types
// are bugs. Tight limits keep every input fast, and a cost oracle checks that they are real
// bounds: each rendering must finish within a time proportional to its step budget and keep its
// peak heap growth within a bound proportional to its memory budget (cost model:
// docs/CHAT_TEMPLATES.md), or the target aborts with the offending input.
#include <sanitizer/allocator_interface.h>
#include <time.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "af/core/error.hpp"
#include "af/tokenizer/chat_template.hpp"

namespace {

const nlohmann::ordered_json& context() {
  static const nlohmann::ordered_json ctx = nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": "Hi ☃ <b>"},
      {"role": "assistant", "content": "Hello", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"a": 1, "b": [1.5, null, true]}}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "{\"ok\": true}"}
    ],
    "tools": [{"type": "function", "function": {"name": "f", "description": "d",
               "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}}],
    "add_generation_prompt": true,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "date_string": "26 Jul 2024"
  })");
  return ctx;
}

// Live heap bytes and their high-water mark, from the sanitizer allocator's hooks.
std::atomic<int64_t> live_bytes{0};
std::atomic<int64_t> peak_bytes{0};

void on_malloc(const volatile void*, size_t size) {
  const int64_t now = live_bytes += static_cast<int64_t>(size);
  int64_t peak = peak_bytes.load();
  while (now > peak && !peak_bytes.compare_exchange_weak(peak, now)) {
  }
}
void on_free(const volatile void* ptr) {
  live_bytes -= static_cast<int64_t>(__sanitizer_get_allocated_size(const_cast<void*>(ptr)));
}

af::tok::TemplateLimits fuzz_limits() {
  af::tok::TemplateLimits limits;
  limits.max_steps = 200000;
  limits.max_string_bytes = 1 << 20;
  limits.max_memory_bytes = 8 << 20;
  limits.max_depth = 200;
  return limits;
}

// CPU time of this thread, so that a loaded machine does not trip the oracle.
double thread_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

// The oracle's bounds: 20 us per step is several times a sanitized build's cost per step (a step
// of byte work is 64 bytes scanned or copied under ASan instrumentation), and the
// heap may hold the charged values plus transient buffers (UTF-32 decodings of the largest
// string, the output and the parsed template).
constexpr double kSecondsPerStep = 20e-6;
constexpr int64_t kTransientBytes = int64_t{16} << 20;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string source(reinterpret_cast<const char*>(data), size);
  const af::tok::TemplateLimits limits = fuzz_limits();
  const auto& ctx = context();
  peak_bytes = live_bytes.load();
  const int64_t heap_before = live_bytes.load();
  const double start = thread_seconds();
  try {
    const auto chat_template = af::tok::ChatTemplate::parse(source, "fuzz");
    (void)chat_template.render(ctx, limits);
  } catch (const af::Error&) {
  }
  const double seconds = thread_seconds() - start;
  const int64_t heap_growth = peak_bytes.load() - heap_before;
  const double max_seconds = 0.5 + static_cast<double>(limits.max_steps) * kSecondsPerStep;
  const int64_t max_heap = static_cast<int64_t>(limits.max_memory_bytes) +
                           4 * static_cast<int64_t>(limits.max_string_bytes) +
                           static_cast<int64_t>(size) * 64 + kTransientBytes;
  if (seconds > max_seconds || heap_growth > max_heap) {
    std::fprintf(stderr, "cost oracle: %.3f s (bound %.3f), heap +%lld bytes (bound %lld)\n",
                 seconds, max_seconds, static_cast<long long>(heap_growth),
                 static_cast<long long>(max_heap));
    std::abort();
  }
  return 0;
}
