// libFuzzer target: any byte string must either decode to non-empty, finite 16 kHz mono audio or
// raise af::Error (the log-mel step after it takes any float samples and is left out for speed);
// crashes, leaks, sanitizer reports, other exception types and large allocations are bugs. The
// duration limit is lowered so that a hostile header cannot ask for a legitimate-but-huge buffer.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include "af/core/error.hpp"
#include "af/modalities/audio.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  af::modalities::AudioLimits limits;
  limits.max_seconds = 20.0;
  try {
    const auto audio = af::modalities::Audio::decode(std::span(data, size), "fuzz", limits);
    if (audio.samples().empty() || audio.seconds() > 2 * limits.max_seconds) __builtin_trap();
    for (float v : audio.samples()) {
      if (!std::isfinite(v)) __builtin_trap();
    }
  } catch (const af::Error&) {
  }
  return 0;
}
