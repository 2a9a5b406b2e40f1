// The PIL backend of transformers' image processors: resize (PIL), center crop (numpy slicing),
// rescale (float64 multiply, cast to float32), normalise (float32 (x - mean) / std).
#include "af/modalities/image_processor.hpp"

#include <cmath>

#include "af/core/error.hpp"
#include "resample.hpp"

namespace af::modalities {
namespace {

using detail::Raster;

Raster to_raster(const Image& image) { return {image.width(), image.height(), image.rgb()}; }

// transformers' get_resize_output_image_size(size=shortest_edge, default_to_square=False):
// (height, width) with the short side `edge` and the long side int(edge * long / short).
std::pair<int, int> shortest_edge_size(int height, int width, int edge) {
  const bool portrait = width <= height;
  const int64_t short_side = portrait ? width : height, long_side = portrait ? height : width;
  const int new_long = int(double(int64_t(edge) * long_side) / double(short_side));
  return portrait ? std::pair{new_long, edge} : std::pair{edge, new_long};
}

Raster resize_raster(const Raster& in, int height, int width, Resample filter) {
  return detail::resample(in.rgb.data(), in.width, in.height, width, height, filter);
}

// The resize step of the config for an RGB image `rgb` ([height, width, 3]).
Raster resize_by_config(const uint8_t* rgb, int height, int width, const ImageProcessorConfig& c) {
  if (c.shortest_edge > 0) {
    const auto [h, w] = shortest_edge_size(height, width, c.shortest_edge);
    return detail::resample(rgb, width, height, w, h, c.resample);
  }
  return detail::resample(rgb, width, height, c.size_width, c.size_height, c.resample);
}

// Resize (optional), center crop (optional), rescale and normalise one uint8 image `rgb`
// ([height, width, 3]) into `out` ([3, H, W] appended); returns {H, W}.
std::pair<int, int> finish(const uint8_t* rgb, int height, int width, const ImageProcessorConfig& c,
                           std::vector<float>& out) {
  Raster image = c.do_resize ? resize_by_config(rgb, height, width, c)
                             : Raster{width, height, {rgb, rgb + size_t(width) * height * 3}};
  if (c.do_center_crop) image = detail::center_crop(image, c.crop_height, c.crop_width);
  const size_t plane = size_t(image.width) * image.height;
  const size_t base = out.size();
  out.resize(base + 3 * plane);
  for (int ch = 0; ch < 3; ++ch) {
    // The value is a function of the uint8 input alone, so each channel is a 256-entry table
    // computed with transformers' arithmetic: astype(float64) * scale -> float32, then
    // (x - mean) / std in float32.
    float table[256];
    for (int v = 0; v < 256; ++v) {
      float f = c.do_rescale ? float(double(v) * c.rescale_factor) : float(v);
      if (c.do_normalize) f = (f - c.image_mean[ch]) / c.image_std[ch];
      table[v] = f;
    }
    float* dst = out.data() + base + ch * plane;
    for (size_t i = 0; i < plane; ++i) dst[i] = table[image.rgb[i * 3 + ch]];
  }
  return {image.height, image.width};
}

// get_patch_output_size: the size that fits (target_h, target_w) keeping the aspect ratio.
std::pair<int, int> patch_output_size(int height, int width, int target_h, int target_w) {
  const double scale_w = double(target_w) / width, scale_h = double(target_h) / height;
  if (scale_w < scale_h) {
    return {std::min(int(std::ceil(height * scale_w)), target_h), target_w};
  }
  return {target_h, std::min(int(std::ceil(width * scale_h)), target_w)};
}

}  // namespace

std::pair<int, int> select_best_resolution(int height, int width,
                                           const std::vector<std::pair<int, int>>& pinpoints) {
  std::pair<int, int> best{0, 0};
  int64_t max_effective = 0;
  double min_wasted = INFINITY;
  for (const auto& [h, w] : pinpoints) {
    const double scale = std::min(double(w) / width, double(h) / height);
    const int64_t down_w = int64_t(width * scale), down_h = int64_t(height * scale);
    const int64_t effective = std::min(down_w * down_h, int64_t(width) * height);
    const int64_t wasted = int64_t(w) * h - effective;
    if (effective > max_effective || (effective == max_effective && wasted < min_wasted)) {
      max_effective = effective;
      min_wasted = double(wasted);
      best = {h, w};
    }
  }
  AF_CHECK(best.first > 0, ErrorCode::kInvalidArgument, "image", "no image_grid_pinpoints fits a ",
           width, "x", height, " image");
  return best;
}

Image resize_like_pil(const Image& image, int width, int height, Resample filter) {
  Raster out =
      detail::resample(image.rgb().data(), image.width(), image.height(), width, height, filter);
  return Image(out.width, out.height, std::move(out.rgb));
}

PixelValues ImageProcessor::process_one(const Image& image) const {
  PixelValues pv;
  const auto [h, w] = finish(image.rgb().data(), image.height(), image.width(), config_, pv.data);
  pv.shape = {3, h, w};
  return pv;
}

PixelValues LlavaNextImageProcessor::preprocess(const Image& image) const {
  const ImageProcessorConfig& c = config_;
  const Raster original = to_raster(image);
  const auto [best_h, best_w] =
      select_best_resolution(original.height, original.width, c.image_grid_pinpoints);
  const auto [new_h, new_w] = patch_output_size(original.height, original.width, best_h, best_w);
  const Raster resized = resize_raster(original, new_h, new_w, c.resample);
  // _get_padding_size: the smaller half of the margin before, the rest after.
  const Raster padded =
      detail::pad(resized, best_h, best_w, (best_h - new_h) / 2, (best_w - new_w) / 2);
  const int patch = c.crop_height > 0   ? c.crop_height
                    : c.size_height > 0 ? c.size_height
                                        : c.shortest_edge;
  const int base_h = c.size_height > 0 ? c.size_height : c.shortest_edge;
  const int base_w = c.size_width > 0 ? c.size_width : c.shortest_edge;

  std::vector<Raster> tiles{resize_raster(original, base_h, base_w, c.resample)};
  for (int y = 0; y < best_h; y += patch) {
    for (int x = 0; x < best_w; x += patch)
      tiles.push_back(detail::crop(padded, y, x, patch, patch));
  }
  PixelValues pv;
  std::pair<int, int> first_hw{0, 0};
  for (size_t i = 0; i < tiles.size(); ++i) {
    const std::pair<int, int> hw =
        finish(tiles[i].rgb.data(), tiles[i].height, tiles[i].width, c, pv.data);
    if (i == 0) first_hw = hw;
    AF_CHECK(hw == first_hw, ErrorCode::kInvalidArgument, "image",
             "LLaVA-NeXT tiles of different sizes (", hw.first, "x", hw.second, " vs ",
             first_hw.first, "x", first_hw.second, "): set do_center_crop and crop_size");
  }
  pv.shape = {int64_t(tiles.size()), 3, first_hw.first, first_hw.second};
  return pv;
}

}  // namespace af::modalities
