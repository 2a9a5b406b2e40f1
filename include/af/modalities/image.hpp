#pragma once
// An image as the vision processors see it: 8-bit RGB, decoded through the same libraries PIL uses
// (libjpeg-turbo, libpng, giflib, libwebp; BMP through stb_image) and converted to RGB exactly as
// transformers' convert_to_rgb does (alpha composited on white, gray/palette/CMYK expanded).
// EXIF orientation is ignored, as transformers ignores it for PIL images it is handed.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace af::modalities {

struct ImageLimits {
  // Largest width * height accepted, checked from the file header before any pixel buffer is
  // allocated (PIL's decompression-bomb guard refuses ~179 Mpx and warns from ~89 Mpx).
  uint64_t max_pixels = 100'000'000;
  // Largest encoded file Image::load reads.
  uint64_t max_file_bytes = 512ull << 20;
};

class Image {
 public:
  Image() = default;
  // Takes `rgb` ([height, width, 3] row-major); throws af::Error on a size mismatch.
  Image(int width, int height, std::vector<uint8_t> rgb);

  // Reads and decodes a file; errors are af::Error "[image] <path>: ...".
  static Image load(const std::string& path, const ImageLimits& limits = {});
  // Decodes an encoded image (JPEG, PNG, GIF first frame, WebP, BMP) held in memory; `origin` names
  // it in error messages.
  static Image decode(std::span<const uint8_t> bytes, const std::string& origin = "<memory>",
                      const ImageLimits& limits = {});

  int width() const { return width_; }
  int height() const { return height_; }
  const std::vector<uint8_t>& rgb() const { return rgb_; }  // [height, width, 3]
  const uint8_t* pixel(int x, int y) const { return rgb_.data() + (size_t(y) * width_ + x) * 3; }

  // SHA-256 (lower-case hex) of the width, height and decoded pixels: equal for the same picture
  // whatever file format carried it, so it can key caches of encoder outputs.
  const std::string& hash() const { return hash_; }

 private:
  int width_ = 0;
  int height_ = 0;
  std::vector<uint8_t> rgb_;  // [height_, width_, 3]
  std::string hash_;
};

}  // namespace af::modalities
