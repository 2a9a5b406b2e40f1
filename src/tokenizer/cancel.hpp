#pragma once
// Cancellation of a running encode. Tokenizer::encode installs the caller's check for the
// duration of the call on its own thread, and the loops that scale with the text (pieces,
// regex matches, model words) report their work here: the check runs once per
// kCancelPollWork code points, so the deep layers need no extra parameter.
#include <cstddef>
#include <functional>

namespace af::tok::detail {

constexpr size_t kCancelPollWork = size_t(1) << 16;

// Installs `check` (may be null or empty: no cancellation) for this thread until destroyed;
// scopes nest, the inner one wins.
class CancelScope {
 public:
  explicit CancelScope(const std::function<bool()>* check);
  ~CancelScope();
  CancelScope(const CancelScope&) = delete;
  CancelScope& operator=(const CancelScope&) = delete;

 private:
  const std::function<bool()>* saved_check_;
  size_t saved_work_;
};

// Adds `work` code points; every kCancelPollWork of them the installed check runs, and when
// it returns true this throws tok::Cancelled.
void poll_cancel(size_t work);

}  // namespace af::tok::detail
