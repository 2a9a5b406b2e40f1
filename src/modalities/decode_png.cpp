// PNG through libpng, reduced to the 8-bit layouts PIL holds: 16-bit channels keep their high byte
// (PIL's "RGB;16B"-style unpackers), except 16-bit gray, which PIL opens as "I;16" and converts to
// RGB by clipping to 255; palettes and tRNS expand to RGB/RGBA as PIL's convert("RGBA") expands
// them; 1/2/4-bit gray scales to 8 bits. libpng reports errors by longjmp to png_jmpbuf.
#include <png.h>

#include <cstring>

#include "image_decode.hpp"

namespace af::modalities::detail {
namespace {

struct Reader {
  std::span<const uint8_t> bytes;
  size_t offset = 0;
  char message[256] = "";
};

void read_bytes(png_structp png, png_bytep out, png_size_t count) {
  auto* reader = static_cast<Reader*>(png_get_io_ptr(png));
  if (count > reader->bytes.size() - reader->offset) png_error(png, "file is truncated");
  std::memcpy(out, reader->bytes.data() + reader->offset, count);
  reader->offset += count;
}

void on_error(png_structp png, png_const_charp message) {
  auto* reader = static_cast<Reader*>(png_get_error_ptr(png));
  std::snprintf(reader->message, sizeof(reader->message), "%s", message);
  png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {}

// Sets up the transformations; returns the channel count they produce.
int configure(png_structp png, png_infop info, bool& gray16) {
  const int color = png_get_color_type(png, info);
  const int depth = png_get_bit_depth(png, info);
  const bool trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
  gray16 = color == PNG_COLOR_TYPE_GRAY && depth == 16;
  if (gray16) {
    png_set_swap(png);  // host-order uint16 rows; clipped below
  } else if (depth == 16) {
    png_set_strip_16(png);
  }
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (trns && !gray16) png_set_tRNS_to_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  return png_get_channels(png, info);
}

// Everything between setjmp and the last libpng call; locals stay trivially destructible.
bool run_decoder(png_structp png, png_infop info, const ImageLimits& limits, RawImage& out,
                 std::vector<png_bytep>& rows, bool& too_large) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_info(png, info);
  const uint64_t width = png_get_image_width(png, info);
  const uint64_t height = png_get_image_height(png, info);
  out.width = static_cast<int>(width);
  out.height = static_cast<int>(height);
  if (width * height > limits.max_pixels || width == 0 || height == 0) {
    too_large = true;
    return true;
  }
  bool gray16 = false;
  out.channels = configure(png, info, gray16);
  const size_t row_bytes = png_get_rowbytes(png, info);
  out.pixels.resize(row_bytes * height);
  rows.resize(height);
  for (size_t y = 0; y < height; ++y) rows[y] = out.pixels.data() + y * row_bytes;
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  if (gray16) {
    // PIL: I;16 -> L/RGB clips at 255 rather than scaling.
    const auto* wide = reinterpret_cast<const uint16_t*>(out.pixels.data());
    for (size_t i = 0, n = width * height; i < n; ++i) {
      out.pixels[i] = static_cast<uint8_t>(wide[i] > 255 ? 255 : wide[i]);
    }
    out.pixels.resize(width * height);
    out.channels = 1;
  }
  return true;
}

}  // namespace

RawImage decode_png(std::span<const uint8_t> bytes, const std::string& origin,
                    const ImageLimits& limits) {
  Reader reader{bytes};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &reader, on_error, on_warning);
  if (!png) fail_image(origin, "libpng could not start");
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    fail_image(origin, "libpng could not start");
  }
  png_set_read_fn(png, &reader, read_bytes);
  RawImage out;
  std::vector<png_bytep> rows;
  bool too_large = false;
  const bool ok = run_decoder(png, info, limits, out, rows, too_large);
  png_destroy_read_struct(&png, &info, nullptr);
  if (!ok) fail_image(origin, std::string("corrupt PNG: ") + reader.message);
  if (too_large) check_dimensions(uint64_t(out.width), uint64_t(out.height), origin, limits);
  return out;
}

}  // namespace af::modalities::detail
