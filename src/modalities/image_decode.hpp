#pragma once
// Format decoders behind Image::decode. Each returns pixels in one of the layouts PIL would hold
// the file in, already reduced to 8 bits per channel as PIL reduces them, so that one
// convert_to_rgb step (image_convert.cpp) gives what transformers' convert_to_rgb gives.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "af/modalities/image.hpp"

namespace af::modalities::detail {

struct RawImage {
  int width = 0;
  int height = 0;
  int channels = 0;             // 1 L, 2 LA, 3 RGB, 4 RGBA
  std::vector<uint8_t> pixels;  // [height, width, channels]
};

// Throws "[image] <origin>: ..." for zero or over-limit dimensions; called from each decoder as
// soon as the header gives the size, before any pixel buffer exists.
void check_dimensions(uint64_t width, uint64_t height, const std::string& origin,
                      const ImageLimits& limits);
[[noreturn]] void fail_image(const std::string& origin, const std::string& message);

RawImage decode_jpeg(std::span<const uint8_t> bytes, const std::string& origin,
                     const ImageLimits& limits);
RawImage decode_png(std::span<const uint8_t> bytes, const std::string& origin,
                    const ImageLimits& limits);
RawImage decode_gif(std::span<const uint8_t> bytes, const std::string& origin,
                    const ImageLimits& limits);
RawImage decode_webp(std::span<const uint8_t> bytes, const std::string& origin,
                     const ImageLimits& limits);
RawImage decode_bmp(std::span<const uint8_t> bytes, const std::string& origin,
                    const ImageLimits& limits);

// transformers' convert_to_rgb: L replicated; LA/RGBA composited on opaque white with PIL's
// alpha_composite fixed-point arithmetic. Returns [height, width, 3].
std::vector<uint8_t> convert_to_rgb(const RawImage& image);

// PIL's alpha_composite of (r, a) over opaque white for one channel value.
uint8_t composite_on_white(uint8_t value, uint8_t alpha);

}  // namespace af::modalities::detail
