// Qwen2VLImageProcessor as transformers' PIL backend computes it (Qwen2VLImageProcessorPil):
// smart_resize, PIL resize on uint8, rescale + normalise as the other PIL processors, then the
// temporal repeat and patch flattening of patchify().
#include <algorithm>
#include <cmath>
#include <utility>

#include "af/core/error.hpp"
#include "af/modalities/image_processor.hpp"

namespace af::modalities {

std::pair<int64_t, int64_t> qwen2vl_smart_resize(int64_t height, int64_t width, int64_t factor,
                                                 int64_t min_pixels, int64_t max_pixels) {
  AF_CHECK(height > 0 && width > 0 && factor > 0, ErrorCode::kInvalidArgument, "image",
           "Qwen2-VL cannot resize a ", width, "x", height, " image");
  const double ratio = double(std::max(height, width)) / double(std::min(height, width));
  AF_CHECK(ratio <= 200.0, ErrorCode::kInvalidArgument, "image", "a ", width, "x", height,
           " image has an aspect ratio of ", ratio,
           "; Qwen2-VL takes at most 200 (smart_resize refuses it)");
  const double f = double(factor);
  // Python's round() rounds halves to even, as nearbyint does in the default rounding mode.
  int64_t h_bar = int64_t(std::nearbyint(double(height) / f)) * factor;
  int64_t w_bar = int64_t(std::nearbyint(double(width) / f)) * factor;
  if (h_bar * w_bar > max_pixels) {
    const double beta = std::sqrt(double(height * width) / double(max_pixels));
    h_bar = std::max(factor, int64_t(std::floor(double(height) / beta / f)) * factor);
    w_bar = std::max(factor, int64_t(std::floor(double(width) / beta / f)) * factor);
  } else if (h_bar * w_bar < min_pixels) {
    const double beta = std::sqrt(double(min_pixels) / double(height * width));
    h_bar = int64_t(std::ceil(double(height) * beta / f)) * factor;
    w_bar = int64_t(std::ceil(double(width) * beta / f)) * factor;
  }
  return {h_bar, w_bar};
}

PixelValues qwen2vl_patchify(const float* frames, int64_t n_frames, int64_t height, int64_t width,
                             int patch_size, int temporal_patch_size, int merge_size) {
  const int64_t p = patch_size, tp = temporal_patch_size, m = merge_size;
  AF_CHECK(p > 0 && tp > 0 && m > 0 && n_frames > 0 && n_frames % tp == 0 &&
               height % (p * m) == 0 && width % (p * m) == 0,
           ErrorCode::kInvalidArgument, "image", "Qwen2-VL patches need ", n_frames,
           " frames to be a multiple of ", tp, " and ", width, "x", height, " to be multiples of ",
           p * m);
  const int64_t grid_t = n_frames / tp, grid_h = height / p, grid_w = width / p;
  const int64_t cols = 3 * tp * p * p, plane = height * width;
  PixelValues pv;
  pv.shape = {grid_t * grid_h * grid_w, cols};
  pv.grid_thw = {grid_t, grid_h, grid_w};
  pv.data.resize(size_t(grid_t * grid_h * grid_w * cols));
  float* out = pv.data.data();
  // Rows: (t, block row, block column, row in block, column in block); columns: (channel, frame
  // in the temporal patch, row in patch, column in patch).
  for (int64_t t = 0; t < grid_t; ++t)
    for (int64_t bh = 0; bh < grid_h / m; ++bh)
      for (int64_t bw = 0; bw < grid_w / m; ++bw)
        for (int64_t mh = 0; mh < m; ++mh)
          for (int64_t mw = 0; mw < m; ++mw) {
            const int64_t y0 = (bh * m + mh) * p, x0 = (bw * m + mw) * p;
            for (int64_t c = 0; c < 3; ++c)
              for (int64_t f = 0; f < tp; ++f) {
                const float* src = frames + ((t * tp + f) * 3 + c) * plane;
                for (int64_t y = 0; y < p; ++y, out += p)
                  std::copy_n(src + (y0 + y) * width + x0, p, out);
              }
          }
  return pv;
}

PixelValues Qwen2VLImageProcessor::preprocess(const Image& image) const {
  const ImageProcessorConfig& c = config_;
  int64_t height = image.height(), width = image.width();
  if (c.do_resize) {
    std::tie(height, width) = qwen2vl_smart_resize(height, width, c.patch_size * c.merge_size,
                                                   c.min_pixels, c.max_pixels);
  }
  // The resize, rescale and normalise steps are those of a fixed-size processor (no crop).
  ImageProcessorConfig fixed = c;
  fixed.type = "SiglipImageProcessor";
  fixed.shortest_edge = 0;
  fixed.size_height = int(height);
  fixed.size_width = int(width);
  fixed.do_center_crop = false;
  const PixelValues planes = SiglipImageProcessor(fixed).preprocess(image);  // [3, H, W]
  height = planes.shape[1], width = planes.shape[2];
  // The frame repeated temporal_patch_size times, as HF's broadcast does.
  const int64_t tp = c.temporal_patch_size;
  std::vector<float> frames(planes.data.size() * size_t(tp));
  for (int64_t f = 0; f < tp; ++f)
    std::copy(planes.data.begin(), planes.data.end(), frames.begin() + f * planes.data.size());
  return qwen2vl_patchify(frames.data(), tp, height, width, c.patch_size, tp, c.merge_size);
}

}  // namespace af::modalities
