// libFuzzer target: any byte string must either decode (and then preprocess) or raise af::Error;
// crashes, leaks, sanitizer reports, other exception types and large allocations are bugs. The
// pixel limit is lowered so that a hostile header cannot make a legitimate-but-huge allocation.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "af/core/error.hpp"
#include "af/modalities/image.hpp"
#include "af/modalities/image_processor.hpp"

namespace {

const af::modalities::ImageProcessor& processor() {
  // A small LLaVA-NeXT config: exercises resize in both pass orders, crop, pad and tiling.
  static const auto p = af::modalities::ImageProcessor::from_json(
      R"({"image_processor_type": "LlavaNextImageProcessor", "size": {"shortest_edge": 28},
          "crop_size": {"height": 28, "width": 28},
          "image_grid_pinpoints": [[28, 56], [56, 28], [56, 56]]})",
      "fuzz.json");
  return *p;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  af::modalities::ImageLimits limits;
  limits.max_pixels = 1 << 20;
  try {
    const auto image = af::modalities::Image::decode(std::span(data, size), "fuzz", limits);
    const auto pv = processor().preprocess(image);
    if (pv.data.size() != size_t(pv.shape[0] * pv.shape[1] * pv.shape[2] * pv.shape[3])) {
      __builtin_trap();
    }
  } catch (const af::Error&) {
  }
  return 0;
}
