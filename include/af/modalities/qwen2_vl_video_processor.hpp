#pragma once
// transformers' Qwen2VLVideoProcessor: each frame resized by smart_resize (torch's antialiased
// bicubic), rescaled and normalised in float32 with the CLIP mean/std, the frame count padded to
// a multiple of temporal_patch_size by repeating the last frame, then cut into
// [grid_t * grid_h * grid_w, C * T * P * P] patches ordered by 2x2 merge groups, exactly as
// pixel_values_videos and video_grid_thw come out of the HF processor. second_per_grid_t is
// Qwen2.5-VL's temporal_patch_size / fps for the M-RoPE time positions.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "af/modalities/video.hpp"

namespace af::modalities {

struct Qwen2VLVideoProcessorConfig {
  int patch_size = 14;
  int temporal_patch_size = 2;
  int merge_size = 2;
  int64_t min_pixels = 128 * 28 * 28;  // size.shortest_edge (or min_pixels)
  int64_t max_pixels = 768 * 28 * 28;  // size.longest_edge (or max_pixels)
  bool do_resize = true;
  bool do_rescale = true;
  double rescale_factor = 1.0 / 255.0;
  bool do_normalize = true;
  std::array<float, 3> image_mean = {0.48145466f, 0.4578275f, 0.40821073f};  // OPENAI_CLIP_MEAN
  std::array<float, 3> image_std = {0.26862954f, 0.26130258f, 0.27577711f};  // OPENAI_CLIP_STD
};

struct VideoPixelValues {
  std::vector<int64_t> shape;       // [grid_t * grid_h * grid_w, 3 * T * P * P]
  std::vector<float> data;          // row-major over shape (pixel_values_videos)
  std::array<int64_t, 3> grid_thw;  // video_grid_thw: (grid_t, grid_h, grid_w)
  double second_per_grid_t = 0;     // temporal_patch_size / sample_fps (Qwen2.5-VL)
};

class Qwen2VLVideoProcessor {
 public:
  explicit Qwen2VLVideoProcessor(Qwen2VLVideoProcessorConfig config = {});
  // PATH is an HF folder (video_preprocessor_config.json, else preprocessor_config.json) or the
  // json file itself; errors are af::Error naming the file and field.
  static Qwen2VLVideoProcessor load(const std::string& path);
  static Qwen2VLVideoProcessor from_json(const std::string& json_text, const std::string& origin);

  const Qwen2VLVideoProcessorConfig& config() const { return config_; }
  // The fetch_video budget that goes with this processor (factor = patch_size * merge_size).
  VideoSampling default_sampling() const;
  VideoPixelValues preprocess(const Video& video) const;

 private:
  Qwen2VLVideoProcessorConfig config_;
};

}  // namespace af::modalities
