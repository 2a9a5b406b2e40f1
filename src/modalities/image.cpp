// Image: format sniffing, the pixel limit, transformers' convert_to_rgb and the content hash.
#include "af/modalities/image.hpp"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "af/core/error.hpp"
#include "image_decode.hpp"
#include "sha256.hpp"

namespace af::modalities {
namespace detail {

void fail_image(const std::string& origin, const std::string& message) {
  fail(ErrorCode::kFormat, "image", origin, ": ", message);
}

void check_dimensions(uint64_t width, uint64_t height, const std::string& origin,
                      const ImageLimits& limits) {
  if (width == 0 || height == 0) {
    fail_image(origin,
               "zero-size image (" + std::to_string(width) + "x" + std::to_string(height) + ")");
  }
  // Each factor fits 32 bits in every format read here, so the product cannot overflow.
  if (width > UINT32_MAX || height > UINT32_MAX || width * height > limits.max_pixels) {
    fail(ErrorCode::kOutOfRange, "image", origin, ": ", width, "x", height, " = ", width * height,
         " pixels exceeds the limit of ", limits.max_pixels, " (ImageLimits::max_pixels)");
  }
}

uint8_t composite_on_white(uint8_t value, uint8_t alpha) {
  // PIL's ImagingAlphaComposite with an opaque white destination, in its 7-bit fixed point.
  if (alpha == 0) return 255;
  constexpr uint32_t kPrecision = 7;
  const uint32_t blend = 255u * (255u - alpha);
  const uint32_t outa255 = alpha * 255u + blend;
  const uint32_t coef1 = alpha * 255u * 255u * (1u << kPrecision) / outa255;
  const uint32_t coef2 = 255u * (1u << kPrecision) - coef1;
  const uint32_t tmp = value * coef1 + 255u * coef2 + (0x80u << kPrecision);
  return static_cast<uint8_t>((((tmp >> 8) + tmp) >> 8) >> kPrecision);
}

std::vector<uint8_t> convert_to_rgb(const RawImage& image) {
  const size_t n = size_t(image.width) * image.height;
  const int c = image.channels;
  if (c == 3) return image.pixels;
  std::vector<uint8_t> rgb(n * 3);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = &image.pixels[i * c];
    uint8_t* o = &rgb[i * 3];
    if (c == 1) {
      o[0] = o[1] = o[2] = p[0];
    } else if (c == 2) {
      o[0] = o[1] = o[2] = composite_on_white(p[0], p[1]);
    } else {
      for (int k = 0; k < 3; ++k) o[k] = composite_on_white(p[k], p[3]);
    }
  }
  return rgb;
}

}  // namespace detail

namespace {

bool starts_with(std::span<const uint8_t> bytes, const char* magic, size_t offset = 0) {
  const size_t n = std::strlen(magic);
  return bytes.size() >= offset + n && std::memcmp(bytes.data() + offset, magic, n) == 0;
}

detail::RawImage decode_any(std::span<const uint8_t> bytes, const std::string& origin,
                            const ImageLimits& limits) {
  if (bytes.empty()) detail::fail_image(origin, "empty file");
  if (starts_with(bytes, "\xFF\xD8\xFF")) return detail::decode_jpeg(bytes, origin, limits);
  if (starts_with(bytes, "\x89PNG\r\n\x1A\n")) return detail::decode_png(bytes, origin, limits);
  if (starts_with(bytes, "GIF87a") || starts_with(bytes, "GIF89a")) {
    return detail::decode_gif(bytes, origin, limits);
  }
  if (starts_with(bytes, "RIFF") && starts_with(bytes, "WEBP", 8)) {
    return detail::decode_webp(bytes, origin, limits);
  }
  if (starts_with(bytes, "BM")) return detail::decode_bmp(bytes, origin, limits);
  detail::fail_image(origin, "not an image in a supported format (JPEG, PNG, GIF, WebP, BMP)");
}

std::string sha256_hex(int width, int height, const std::vector<uint8_t>& rgb) {
  uint8_t header[8];
  for (int i = 0; i < 4; ++i) {
    header[i] = uint8_t(uint32_t(width) >> (8 * i));
    header[4 + i] = uint8_t(uint32_t(height) >> (8 * i));
  }
  detail::Sha256 sha;
  sha.update(header);
  sha.update(rgb);
  return detail::to_hex(sha.finish());
}

}  // namespace

Image::Image(int width, int height, std::vector<uint8_t> rgb)
    : width_(width), height_(height), rgb_(std::move(rgb)) {
  AF_CHECK(width > 0 && height > 0 && rgb_.size() == size_t(width) * height * 3,
           ErrorCode::kInvalidArgument, "image", "RGB buffer of ", rgb_.size(), " bytes for ",
           width, "x", height);
  hash_ = sha256_hex(width_, height_, rgb_);
}

Image Image::decode(std::span<const uint8_t> bytes, const std::string& origin,
                    const ImageLimits& limits) {
  detail::RawImage raw = decode_any(bytes, origin, limits);
  std::vector<uint8_t> rgb =
      raw.channels == 3 ? std::move(raw.pixels) : detail::convert_to_rgb(raw);
  return Image(raw.width, raw.height, std::move(rgb));
}

Image Image::load(const std::string& path, const ImageLimits& limits) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) detail::fail_image(path, "is a directory");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail(ErrorCode::kIo, "image", path, ": cannot open");
  const std::streamoff size = in.tellg();
  if (size < 0) fail(ErrorCode::kIo, "image", path, ": cannot read");
  if (uint64_t(size) > limits.max_file_bytes) {
    fail(ErrorCode::kOutOfRange, "image", path, ": ", size, " bytes exceeds the limit of ",
         limits.max_file_bytes, " (ImageLimits::max_file_bytes)");
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.seekg(0);
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size)) {
    fail(ErrorCode::kIo, "image", path, ": read failed");
  }
  return decode(bytes, path, limits);
}

}  // namespace af::modalities
