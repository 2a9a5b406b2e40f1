// JPEG through libjpeg-turbo with the settings PIL's decoder uses (ISLOW DCT, fancy upsampling, the
// library's own colour conversion to RGB or gray); CMYK/YCCK files are converted as PIL converts a
// CMYK image to RGB. libjpeg reports errors through error_exit, which must not return: it
// longjmps back here and the message becomes an af::Error.
#include <csetjmp>
#include <cstdio>
// jpeglib.h needs size_t and FILE declared first.
#include <jerror.h>
#include <jpeglib.h>

#include "image_decode.hpp"

namespace af::modalities::detail {
namespace {

struct ErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void on_error_exit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// Warnings are ignored as PIL ignores them, except running out of data: PIL refuses a truncated
// JPEG ("image file is truncated") where libjpeg would pad it with gray.
void on_emit_message(j_common_ptr cinfo, int level) {
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) on_error_exit(cinfo);
}

// PIL's cmyk2rgb: each channel is (255 - k) - c * (255 - k) / 255 with its MULDIV255 rounding.
uint8_t cmyk_channel(int c, int k) {
  const int nk = 255 - k;
  const int tmp = c * nk + 128;
  const int v = nk - (((tmp >> 8) + tmp) >> 8);
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// The part that may longjmp: only trivially destructible locals live in this frame. Returns false
// with err.message set on a libjpeg error.
bool run_decoder(jpeg_decompress_struct& cinfo, ErrorManager& err, std::span<const uint8_t> bytes,
                 const ImageLimits& limits, RawImage& out, bool& inverted_cmyk, bool& too_large) {
  if (setjmp(err.jump)) return false;
  jpeg_mem_src(&cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&cinfo, TRUE);
  const uint64_t pixels = uint64_t(cinfo.image_width) * cinfo.image_height;
  if (cinfo.image_width == 0 || cinfo.image_height == 0 || pixels > limits.max_pixels) {
    too_large = true;
    out.width = static_cast<int>(cinfo.image_width);
    out.height = static_cast<int>(cinfo.image_height);
    return true;
  }
  cinfo.dct_method = JDCT_ISLOW;
  cinfo.do_fancy_upsampling = TRUE;
  switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
      cinfo.out_color_space = JCS_GRAYSCALE;
      break;
    case JCS_CMYK:
    case JCS_YCCK:
      cinfo.out_color_space = JCS_CMYK;
      break;
    default:
      cinfo.out_color_space = JCS_RGB;
      break;
  }
  // PIL reads Adobe-marked CMYK as "CMYK;I" (inverted), as Photoshop writes it.
  inverted_cmyk = cinfo.saw_Adobe_marker;
  jpeg_start_decompress(&cinfo);
  out.width = static_cast<int>(cinfo.output_width);
  out.height = static_cast<int>(cinfo.output_height);
  out.channels = cinfo.output_components;
  out.pixels.resize(size_t(out.width) * out.height * out.channels);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = out.pixels.data() + size_t(cinfo.output_scanline) * out.width * out.channels;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  return true;
}

}  // namespace

RawImage decode_jpeg(std::span<const uint8_t> bytes, const std::string& origin,
                     const ImageLimits& limits) {
  jpeg_decompress_struct cinfo{};
  ErrorManager err{};
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = on_error_exit;
  err.pub.emit_message = on_emit_message;
  jpeg_create_decompress(&cinfo);
  RawImage out;
  bool inverted_cmyk = false, too_large = false;
  const bool ok = run_decoder(cinfo, err, bytes, limits, out, inverted_cmyk, too_large);
  jpeg_destroy_decompress(&cinfo);
  if (!ok) fail_image(origin, std::string("corrupt JPEG: ") + err.message);
  if (too_large) check_dimensions(uint64_t(out.width), uint64_t(out.height), origin, limits);
  if (out.channels == 4) {
    RawImage rgb{out.width, out.height, 3, {}};
    rgb.pixels.resize(size_t(out.width) * out.height * 3);
    for (size_t i = 0, n = size_t(out.width) * out.height; i < n; ++i) {
      const uint8_t* p = &out.pixels[i * 4];
      auto value = [&](int c) { return inverted_cmyk ? 255 - p[c] : p[c]; };
      for (int c = 0; c < 3; ++c) rgb.pixels[i * 3 + c] = cmyk_channel(value(c), value(3));
    }
    return rgb;
  }
  if (out.channels != 1 && out.channels != 3) {
    fail_image(origin, "unsupported JPEG with " + std::to_string(out.channels) + " components");
  }
  return out;
}

}  // namespace af::modalities::detail
