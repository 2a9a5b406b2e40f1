#pragma once
// Qwen2-VL / Qwen2.5-VL vision encoder over flattened patches: the interface images and videos
// share. The image processor (af::modalities::Qwen2VLImageProcessor) or the video processor
// (Qwen2VLVideoProcessor's pixel_values_videos) makes patches [n, 3 * T * P * P] with one
// grid_thw triple per image or video, as HF's Qwen2VisionTransformer.forward(hidden_states,
// grid_thw) takes them; encode_patches returns the PatchMerger's rows, n / merge^2 of them.
#include <cstdint>
#include <span>
#include <vector>

#include "af/models/image_encoder.hpp"

namespace af::models {

class Qwen2VLVisionEncoder : public ImageEncoder {
 public:
  // patches: [sum over items of t * h * w, 3 * T * P * P] row-major; grid_thw: 3 per item (t,
  // h, w in patches; h and w multiples of merge_size). Returns [sum t * h * w / merge^2,
  // output_hidden()] rows, items in order (each item's rows in HF's merge-block order). Throws
  // kInvalidArgument when the sizes disagree.
  virtual ImageFeatures encode_patches(std::span<const float> patches,
                                       std::span<const int64_t> grid_thw) = 0;
  virtual int64_t merge_size() const = 0;
  // image_grid_thw {1, h, w} of `image` as the processor will make it (smart_resize alone).
  virtual std::vector<int64_t> image_grid(const modalities::Image& image) const = 0;
};

// transformers' get_rope_index for one unpadded sequence: runs of image_token (each one image,
// expanded to t * h * w / merge^2 pads) take (t, h, w) positions on the merged grid offset by the
// position where they start (t scaled by the video's interval for video_token runs: Qwen2.5-VL's
// qwen2_5_vl_time_interval, the float32 product truncated as torch's .long(); 1 for images and
// for Qwen2-VL); text continues after a run at start + max(h, w) / merge, other ids count up by
// one. Returns [3][ids.size()]. Throws kInvalidArgument when the runs and grids do not match up.
std::vector<int32_t> qwen2_vl_rope_index(std::span<const int32_t> ids, int32_t image_token,
                                         int32_t video_token,
                                         std::span<const int64_t> image_grid_thw,
                                         std::span<const int64_t> video_grid_thw, int64_t merge,
                                         std::span<const float> video_intervals = {});

// Qwen2.5-VL's step between a video's temporal patches in M-RoPE positions, as torch computes it:
// tokens_per_second * second_per_grid_t in float32 (the processor hands second_per_grid_ts over
// as a float32 tensor), so that the truncated positions equal transformers'.
float qwen2_5_vl_time_interval(double tokens_per_second, double second_per_grid_t);

}  // namespace af::models
