// libFuzzer target: af-server's request-head scanner and Bearer check on arbitrary bytes. Fed
// whole or in pieces, the scanner must reach the same verdict, never report a head longer than
// its input, and stay within its limits.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "http_guard.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  // The first two bytes pick the limits and the piece size; the rest is what a client sends.
  const af::server::HeadLimits limits{64 + data[0] * 16u, 1 + data[0] % 8u};
  const size_t piece = 1 + data[1] % 32;
  const std::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);

  af::server::HeadScanner whole(limits);
  const af::server::HeadStatus verdict = whole.scan(input);
  af::server::HeadScanner pieces(limits);
  af::server::HeadStatus last = af::server::HeadStatus::kIncomplete;
  std::string buffer;
  for (size_t at = 0; at < input.size() && last == af::server::HeadStatus::kIncomplete;
       at += piece) {
    buffer.append(input.substr(at, piece));
    last = pieces.scan(buffer);
  }
  if (last != verdict) std::abort();
  if (verdict == af::server::HeadStatus::kComplete) {
    if (whole.head_size() != pieces.head_size() || whole.head_size() > input.size()) std::abort();
    if (whole.head_size() - whole.skipped() > limits.max_bytes) std::abort();
    if (whole.header_lines() > limits.max_lines) std::abort();
  }
  (void)af::server::bearer_key_matches(input, "key");
  return 0;
}
