// WebP through libwebp's animation decoder (as PIL decodes every WebP: first frame, RGBA canvas;
// RGB when the file has no alpha) and BMP through stb_image (BMP only; 32-bit BMPs read as RGB,
// as PIL reads BI_RGB files with an unused fourth byte).
#include <stb/stb_image.h>
#include <webp/decode.h>
#include <webp/demux.h>

#include <cstdlib>
#include <cstring>

#include "image_decode.hpp"

namespace af::modalities::detail {

RawImage decode_webp(std::span<const uint8_t> bytes, const std::string& origin,
                     const ImageLimits& limits) {
  WebPBitstreamFeatures features;
  if (WebPGetFeatures(bytes.data(), bytes.size(), &features) != VP8_STATUS_OK) {
    fail_image(origin, "corrupt WebP header");
  }
  check_dimensions(uint64_t(features.width), uint64_t(features.height), origin, limits);
  WebPAnimDecoderOptions options;
  if (!WebPAnimDecoderOptionsInit(&options)) fail_image(origin, "libwebp version mismatch");
  options.color_mode = MODE_RGBA;
  options.use_threads = 0;
  const WebPData data{bytes.data(), bytes.size()};
  WebPAnimDecoder* decoder = WebPAnimDecoderNew(&data, &options);
  if (!decoder) fail_image(origin, "corrupt WebP");
  WebPAnimInfo info;
  uint8_t* frame = nullptr;
  int timestamp = 0;
  const bool ok = WebPAnimDecoderGetInfo(decoder, &info) &&
                  uint64_t(info.canvas_width) * info.canvas_height <= limits.max_pixels &&
                  WebPAnimDecoderGetNext(decoder, &frame, &timestamp);
  RawImage out;
  if (ok) {
    out = {int(info.canvas_width), int(info.canvas_height), features.has_alpha ? 4 : 3, {}};
    const size_t n = size_t(out.width) * out.height;
    out.pixels.resize(n * out.channels);
    for (size_t i = 0; i < n; ++i) {
      std::memcpy(&out.pixels[i * out.channels], frame + i * 4, out.channels);
    }
  }
  WebPAnimDecoderDelete(decoder);
  if (!ok) fail_image(origin, "corrupt WebP data");
  return out;
}

namespace {

uint32_t le32(std::span<const uint8_t> b, size_t at) {
  return uint32_t(b[at]) | uint32_t(b[at + 1]) << 8 | uint32_t(b[at + 2]) << 16 |
         uint32_t(b[at + 3]) << 24;
}

// stb_image reads past the end of a truncated BMP as zeros; PIL refuses such a file ("image file
// is truncated"), so uncompressed pixel arrays must be complete.
void check_bmp_size(std::span<const uint8_t> bytes, const std::string& origin) {
  if (bytes.size() < 34 || le32(bytes, 14) < 40) return;  // OS/2 headers: stb checks them
  const uint32_t offset = le32(bytes, 10), compression = le32(bytes, 30);
  const int64_t width = int32_t(le32(bytes, 18)), height = int32_t(le32(bytes, 22));
  const int64_t bits = bytes[28] | bytes[29] << 8;
  if (compression != 0 && compression != 3) return;  // RLE: stb rejects it
  const int64_t row = (std::abs(width) * bits + 31) / 32 * 4;
  if (int64_t(offset) + row * std::abs(height) > int64_t(bytes.size())) {
    fail_image(origin, "BMP file is truncated");
  }
}

}  // namespace

RawImage decode_bmp(std::span<const uint8_t> bytes, const std::string& origin,
                    const ImageLimits& limits) {
  if (bytes.size() > size_t(INT32_MAX)) fail_image(origin, "BMP larger than 2 GiB");
  int width = 0, height = 0, channels = 0;
  const int size = static_cast<int>(bytes.size());
  if (!stbi_info_from_memory(bytes.data(), size, &width, &height, &channels)) {
    fail_image(origin, std::string("corrupt BMP: ") + stbi_failure_reason());
  }
  check_dimensions(uint64_t(width), uint64_t(height), origin, limits);
  check_bmp_size(bytes, origin);
  stbi_uc* pixels = stbi_load_from_memory(bytes.data(), size, &width, &height, &channels, 3);
  if (!pixels) fail_image(origin, std::string("corrupt BMP: ") + stbi_failure_reason());
  RawImage out{width, height, 3, {}};
  out.pixels.assign(pixels, pixels + size_t(width) * height * 3);
  stbi_image_free(pixels);
  return out;
}

}  // namespace af::modalities::detail
