#include "tokenizer/cancel.hpp"

#include "af/tokenizer/tokenizer.hpp"

namespace af::tok::detail {
namespace {

// Per thread: encode runs on the caller's thread, and concurrent encodes on other threads
// (the server's request threads) each have their own check.
struct CancelState {
  const std::function<bool()>* check = nullptr;
  size_t work = 0;
};
thread_local CancelState tls_cancel;

}  // namespace

CancelScope::CancelScope(const std::function<bool()>* check)
    : saved_check_(tls_cancel.check), saved_work_(tls_cancel.work) {
  tls_cancel.check = (check != nullptr && *check) ? check : nullptr;
  tls_cancel.work = 0;
}

CancelScope::~CancelScope() {
  tls_cancel.check = saved_check_;
  tls_cancel.work = saved_work_;
}

void poll_cancel(size_t work) {
  CancelState& s = tls_cancel;
  if (s.check == nullptr) return;
  s.work += work;
  if (s.work < kCancelPollWork) return;
  s.work = 0;
  if ((*s.check)()) throw Cancelled();
}

}  // namespace af::tok::detail
