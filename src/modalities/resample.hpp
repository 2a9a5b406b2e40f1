#pragma once
// PIL's ImagingResample for 8-bit RGB, and the uint8 crop/pad steps the processors use between
// resizes. Private to af_modalities.
#include <cstdint>
#include <vector>

#include "af/modalities/image_processor.hpp"

namespace af::modalities::detail {

struct Raster {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;  // [height, width, 3]
};

Raster resample(const uint8_t* rgb, int in_width, int in_height, int out_width, int out_height,
                Resample filter);

// numpy center_crop of transformers: zero-padded where the crop is larger than the image.
Raster center_crop(const Raster& in, int crop_height, int crop_width);

// Copy of rows [top, top + h) and columns [left, left + w), clamped to the raster as numpy slicing
// clamps.
Raster crop(const Raster& in, int top, int left, int h, int w);

// `in` pasted at (top, left) on a zero (black) canvas of out_height x out_width.
Raster pad(const Raster& in, int out_height, int out_width, int top, int left);

}  // namespace af::modalities::detail
