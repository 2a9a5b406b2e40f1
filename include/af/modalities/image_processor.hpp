#pragma once
// Image processors built from a model's preprocessor_config.json, reproducing transformers' PIL
// backend (CLIPImageProcessorPil, SiglipImageProcessorPil, LlavaNextImageProcessorPil) value for
// value: PIL's fixed-point resampling on uint8 RGB, numpy's center crop, rescale in float64 cast to
// float32, normalise in float32.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "af/modalities/image.hpp"

namespace af::modalities {

// PIL's resampling filters, numbered as PIL numbers them (the "resample" field of the configs).
enum class Resample {
  kNearest = 0,
  kLanczos = 1,
  kBilinear = 2,
  kBicubic = 3,
  kBox = 4,
  kHamming = 5
};

// PIL's Image.resize((width, height), filter) of an RGB image with the default box and no
// reducing_gap: separable convolution, horizontal pass then vertical, 22-bit fixed-point weights,
// rounding and clipping to uint8 after each pass. kNearest is not supported (kUnsupported).
Image resize_like_pil(const Image& image, int width, int height, Resample filter);

struct PixelValues {
  std::vector<int64_t> shape;     // [3, H, W], [n, 3, H, W], or Qwen2-VL's [patches, C * T * P * P]
  std::vector<float> data;        // row-major over shape
  std::vector<int64_t> grid_thw;  // Qwen2-VL: image_grid_thw {t, h, w} in patches; else empty
  std::vector<int64_t> tgt_sizes;  // MiniCPM-V: {h, w} in patches per piece; else empty
};

// The fields of preprocessor_config.json these processors read, with the class defaults applied.
struct ImageProcessorConfig {
  std::string type;  // "CLIPImageProcessor", "SiglipImageProcessor", "LlavaNextImageProcessor"
  bool do_convert_rgb = true;
  bool do_resize = true;
  int shortest_edge = 0;                // size {"shortest_edge": n}; 0 when size is height/width
  int size_height = 0, size_width = 0;  // size {"height", "width"}
  Resample resample = Resample::kBicubic;
  bool do_center_crop = false;
  int crop_height = 0, crop_width = 0;
  bool do_rescale = true;
  double rescale_factor = 1.0 / 255.0;
  bool do_normalize = true;
  std::vector<float> image_mean, image_std;  // [3]
  bool do_pad = false;                       // LLaVA-NeXT: pad the tile count in a batch
  std::vector<std::pair<int, int>> image_grid_pinpoints;  // LLaVA-NeXT: (height, width)
  // Qwen2-VL: the pixel budget (size.shortest_edge / size.longest_edge, or min_pixels /
  // max_pixels), the vision tower's patch side, frames per temporal patch and merge side.
  int64_t min_pixels = 0, max_pixels = 0;
  int patch_size = 0, temporal_patch_size = 0, merge_size = 0;
};

class ImageProcessor {
 public:
  virtual ~ImageProcessor() = default;

  // MODEL is an HF folder holding preprocessor_config.json or the path of that json file.
  static std::unique_ptr<ImageProcessor> load(const std::string& path);
  // From the json text; `origin` names it in errors.
  static std::unique_ptr<ImageProcessor> from_json(const std::string& json_text,
                                                   const std::string& origin);
  static std::unique_ptr<ImageProcessor> from_config(const ImageProcessorConfig& config);

  const ImageProcessorConfig& config() const { return config_; }
  // Pixel values as the HF processor returns them for one image: [3, H, W], or [n, 3, H, W] for
  // processors that tile (LLaVA-NeXT: base image then tiles, row-major over the grid).
  virtual PixelValues preprocess(const Image& image) const = 0;

 protected:
  explicit ImageProcessor(ImageProcessorConfig config) : config_(std::move(config)) {}
  // PilBackend._preprocess for one image: resize, center crop, rescale, normalise -> [3, H, W].
  PixelValues process_one(const Image& image) const;

  ImageProcessorConfig config_;
};

// CLIPImageProcessor: shortest-edge resize (PIL bicubic), center crop, rescale, normalise.
class CLIPImageProcessor : public ImageProcessor {
 public:
  explicit CLIPImageProcessor(ImageProcessorConfig config) : ImageProcessor(std::move(config)) {}
  static ImageProcessorConfig defaults();
  PixelValues preprocess(const Image& image) const override { return process_one(image); }
};

// SiglipImageProcessor: fixed-size resize, no crop, mean = std = 0.5.
class SiglipImageProcessor : public ImageProcessor {
 public:
  explicit SiglipImageProcessor(ImageProcessorConfig config) : ImageProcessor(std::move(config)) {}
  static ImageProcessorConfig defaults();
  PixelValues preprocess(const Image& image) const override { return process_one(image); }
};

// LlavaNextImageProcessor (anyres): the image resized to the best grid pinpoint keeping its aspect,
// centred on black padding, cut into crop-size tiles; output [1 + tiles, 3, H, W], the whole image
// resized to the base size first.
class LlavaNextImageProcessor : public ImageProcessor {
 public:
  explicit LlavaNextImageProcessor(ImageProcessorConfig config)
      : ImageProcessor(std::move(config)) {}
  static ImageProcessorConfig defaults();
  PixelValues preprocess(const Image& image) const override;
};

// Qwen2VLImageProcessor: smart_resize (sides multiples of patch_size * merge_size, pixels within
// [min_pixels, max_pixels], aspect ratio kept; ratio > 200 refused), PIL bicubic resize, rescale,
// normalise, the frame repeated temporal_patch_size times, and patches flattened in HF's order:
// shape [grid_h * grid_w, 3 * T * P * P], grid_thw {1, grid_h, grid_w}.
class Qwen2VLImageProcessor : public ImageProcessor {
 public:
  explicit Qwen2VLImageProcessor(ImageProcessorConfig config) : ImageProcessor(std::move(config)) {}
  static ImageProcessorConfig defaults();
  PixelValues preprocess(const Image& image) const override;
};

// Qwen2-VL's smart_resize: the (height, width) an image of height x width is resized to, with
// Python's float arithmetic (round half to even). Throws kInvalidArgument for an aspect ratio
// above 200 or an empty image.
std::pair<int64_t, int64_t> qwen2vl_smart_resize(int64_t height, int64_t width, int64_t factor,
                                                 int64_t min_pixels, int64_t max_pixels);

// Qwen2-VL's patch flattening, shared by images and videos: `frames` [n_frames, 3, height, width]
// (n_frames a multiple of temporal_patch_size; sides multiples of patch * merge) becomes rows
// [grid_t * grid_h * grid_w, 3 * T * P * P], ordered (t, h / merge, w / merge, merge_h, merge_w)
// with columns (channel, frame in patch, patch row, patch column), as HF's processors flatten.
PixelValues qwen2vl_patchify(const float* frames, int64_t n_frames, int64_t height, int64_t width,
                             int patch_size, int temporal_patch_size, int merge_size);

// LLaVA-NeXT's select_best_resolution: the (height, width) pinpoint that keeps the most of the
// image's resolution and wastes the least.
std::pair<int, int> select_best_resolution(int height, int width,
                                           const std::vector<std::pair<int, int>>& pinpoints);

}  // namespace af::modalities
