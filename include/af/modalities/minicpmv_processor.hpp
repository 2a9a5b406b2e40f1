#pragma once
// MiniCPM-V 2.6's image processor (OpenBMB's MiniCPMVImageProcessor, image_processing_minicpmv.py)
// and its prompt placeholders. An image becomes the overview ("source") image plus, when it holds
// more than scale_resolution^2 pixels, a grid of slices: the grid is the one among the candidate
// slice counts (ceil(pixels / scale^2) clamped to max_slice_nums, -1, +1) whose log aspect ratio
// is closest to the image's; every piece is resized (PIL bicubic) to sides that are multiples of
// the patch size, rescaled (float32 / 255), normalised and laid out as HF's reshape_by_patch does:
// [3, patch, n_patches * patch], patch after patch in row-major order.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "af/modalities/image_processor.hpp"

namespace af::modalities {

// The preprocessor_config.json keys MiniCPMVImageProcessor reads (defaults: its __init__'s).
struct MiniCPMVConfig {
  int max_slice_nums = 9;
  int scale_resolution = 448;
  int patch_size = 14;
  bool slice_mode = true;
  bool use_image_id = false;
  int image_feature_size = 64;  // placeholder tokens per piece (the resampler's query_num)
  std::string im_start = "<image>", im_end = "</image>";
  std::string slice_start = "<slice>", slice_end = "</slice>";
  std::string unk = "<unk>";
  std::string im_id_start = "<image_id>", im_id_end = "</image_id>";
  std::vector<float> mean = {0.5f, 0.5f, 0.5f}, std = {0.5f, 0.5f, 0.5f};  // norm_mean / norm_std
};

// Parses the json text of a preprocessor_config.json whose image_processor_type is
// MiniCPMVImageProcessor; errors name `origin` and the field.
MiniCPMVConfig parse_minicpmv_config(const std::string& json_text, const std::string& origin);

// get_sliced_grid: {columns, rows} of slices for a width x height image, or nullopt when the
// image is not sliced (at most scale^2 pixels, or slice_mode off).
std::optional<std::pair<int, int>> minicpmv_slice_grid(const MiniCPMVConfig& c, int width,
                                                       int height);

// The pieces of one image: the overview first, then the slices row by row.
struct MiniCPMVPieces {
  std::vector<Image> images;
  std::optional<std::pair<int, int>> grid;  // {columns, rows}
};
MiniCPMVPieces minicpmv_slice_image(const MiniCPMVConfig& c, const Image& image);

// get_slice_image_placeholder: the text that replaces the image_index-th "(<image>./</image>)"
// of a prompt ("<image_id>i</image_id>" when use_image_id, "<image>" + unk * feature_size +
// "</image>", then the slices' "<slice>...</slice>" rows joined by "\n").
std::string minicpmv_placeholder(const MiniCPMVConfig& c, int width, int height, int image_index);

class MiniCPMVImageProcessor : public ImageProcessor {
 public:
  explicit MiniCPMVImageProcessor(MiniCPMVConfig config);
  const MiniCPMVConfig& minicpmv_config() const { return mc_; }
  // The pieces' pixel values concatenated along the last axis: shape [3, patch, sum_i(h_i * w_i)
  // * patch] (piece i is columns [offset_i, offset_i + h_i * w_i * patch) of every row, exactly
  // HF's pixel_values[i]), tgt_sizes {h_0, w_0, h_1, w_1, ...} in patches.
  PixelValues preprocess(const Image& image) const override;

 private:
  MiniCPMVConfig mc_;
};

}  // namespace af::modalities
