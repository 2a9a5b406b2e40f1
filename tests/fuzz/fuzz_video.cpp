// libFuzzer target: any byte string given to Video::decode (the container entry point the server
// and af-cli reach) must either give sampled frames of the planned size or raise af::Error;
// crashes, hangs, sanitizer reports, other exception types and large allocations are bugs. The
// limits are lowered so that a hostile header cannot ask for a legitimate-but-huge decode.
#include <cstddef>
#include <cstdint>
#include <span>

#include "af/core/error.hpp"
#include "af/modalities/video.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  af::modalities::VideoLimits limits;
  limits.max_frame_pixels = 1024 * 1024;
  limits.max_seconds = 600;
  limits.max_packets = 20000;
  af::modalities::VideoSampling sampling;
  sampling.max_frames = 8;
  sampling.min_pixels = 28 * 28;
  sampling.max_pixels = 64 * 28 * 28;
  try {
    const auto video =
        af::modalities::Video::decode(std::span(data, size), "fuzz", sampling, limits);
    if (video.frames().empty() || video.frames().size() > 8) __builtin_trap();
    for (const auto& f : video.frames()) {
      if (f.width() != video.width() || f.height() != video.height()) __builtin_trap();
      if (uint64_t(f.width()) * f.height() > uint64_t(sampling.max_pixels)) __builtin_trap();
    }
  } catch (const af::Error&) {
  }
  return 0;
}
