// GIF, first frame only, through giflib (PIL opens a GIF as its first frame). The frame is drawn on
// a canvas of the logical screen size (grown to hold the frame, as PIL grows it) filled with the
// transparent index, and expanded through its palette: RGBA where the graphics control block
// names a transparent index (PIL's "P" + transparency -> RGBA), RGB otherwise.
#include <gif_lib.h>

#include <algorithm>
#include <cstring>

#include "image_decode.hpp"

namespace af::modalities::detail {
namespace {

struct Source {
  std::span<const uint8_t> bytes;
  size_t offset = 0;
};

int read_bytes(GifFileType* gif, GifByteType* out, int count) {
  auto* src = static_cast<Source*>(gif->UserData);
  const size_t n = std::min(size_t(count), src->bytes.size() - src->offset);
  std::memcpy(out, src->bytes.data() + src->offset, n);
  src->offset += n;
  return static_cast<int>(n);
}

struct GifCloser {
  GifFileType* gif;
  ~GifCloser() {
    int ignored = 0;
    if (gif) DGifCloseFile(gif, &ignored);
  }
};

[[noreturn]] void fail_gif(const std::string& origin, int code) {
  const char* text = GifErrorString(code);
  fail_image(origin, std::string("corrupt GIF: ") + (text ? text : "unknown error"));
}

// Reads extension blocks up to the first image descriptor; returns the transparent index or -1.
int read_to_first_image(GifFileType* gif, const std::string& origin) {
  int transparent = -1;
  for (;;) {
    GifRecordType type;
    if (DGifGetRecordType(gif, &type) == GIF_ERROR) fail_gif(origin, gif->Error);
    if (type == IMAGE_DESC_RECORD_TYPE) return transparent;
    if (type == TERMINATE_RECORD_TYPE) fail_image(origin, "GIF holds no image");
    if (type != EXTENSION_RECORD_TYPE) continue;
    int code = 0;
    GifByteType* block = nullptr;
    if (DGifGetExtension(gif, &code, &block) == GIF_ERROR) fail_gif(origin, gif->Error);
    if (code == GRAPHICS_EXT_FUNC_CODE && block && block[0] >= 4) {
      GraphicsControlBlock gcb;
      if (DGifExtensionToGCB(block[0], block + 1, &gcb) == GIF_OK) {
        transparent = gcb.TransparentColor;
      }
    }
    while (block) {
      if (DGifGetExtensionNext(gif, &block) == GIF_ERROR) fail_gif(origin, gif->Error);
    }
  }
}

// Frame rows in file order; interlaced frames store rows in four passes.
std::vector<int> row_order(int height, bool interlaced) {
  std::vector<int> order;
  order.reserve(height);
  if (!interlaced) {
    for (int y = 0; y < height; ++y) order.push_back(y);
    return order;
  }
  const int start[] = {0, 4, 2, 1}, step[] = {8, 8, 4, 2};
  for (int pass = 0; pass < 4; ++pass) {
    for (int y = start[pass]; y < height; y += step[pass]) order.push_back(y);
  }
  return order;
}

}  // namespace

RawImage decode_gif(std::span<const uint8_t> bytes, const std::string& origin,
                    const ImageLimits& limits) {
  Source src{bytes};
  int error = 0;
  GifCloser closer{DGifOpen(&src, read_bytes, &error)};
  GifFileType* gif = closer.gif;
  if (!gif) fail_gif(origin, error);
  const int transparent = read_to_first_image(gif, origin);
  if (DGifGetImageDesc(gif) == GIF_ERROR) fail_gif(origin, gif->Error);
  const GifImageDesc& desc = gif->Image;
  if (desc.Left < 0 || desc.Top < 0 || desc.Width <= 0 || desc.Height <= 0) {
    fail_image(origin, "GIF frame has an invalid size");
  }
  const uint64_t width = std::max<uint64_t>(gif->SWidth, uint64_t(desc.Left) + desc.Width);
  const uint64_t height = std::max<uint64_t>(gif->SHeight, uint64_t(desc.Top) + desc.Height);
  check_dimensions(width, height, origin, limits);
  check_dimensions(uint64_t(desc.Width), uint64_t(desc.Height), origin, limits);

  // Palette indices of the canvas.
  std::vector<uint8_t> indices(width * height, uint8_t(transparent >= 0 ? transparent : 0));
  std::vector<uint8_t> line(desc.Width);
  for (int y : row_order(desc.Height, desc.Interlace)) {
    if (DGifGetLine(gif, line.data(), desc.Width) == GIF_ERROR) fail_gif(origin, gif->Error);
    std::memcpy(&indices[(size_t(desc.Top) + y) * width + desc.Left], line.data(), desc.Width);
  }
  const ColorMapObject* map = desc.ColorMap ? desc.ColorMap : gif->SColorMap;
  RawImage out{int(width), int(height), transparent >= 0 ? 4 : 3, {}};
  out.pixels.resize(width * height * out.channels);
  for (size_t i = 0; i < indices.size(); ++i) {
    const int index = indices[i];
    uint8_t* p = &out.pixels[i * out.channels];
    if (!map) {  // no palette at all: PIL falls back to a gray ramp
      p[0] = p[1] = p[2] = uint8_t(index);
    } else if (index < map->ColorCount) {
      p[0] = map->Colors[index].Red, p[1] = map->Colors[index].Green,
      p[2] = map->Colors[index].Blue;
    } else {
      p[0] = p[1] = p[2] = 0;
    }
    if (out.channels == 4) p[3] = index == transparent ? 0 : 255;
  }
  return out;
}

}  // namespace af::modalities::detail
