#pragma once
// LLaVA(-NeXT)'s image features as transformers computes them: the vision tower's selected hidden
// states (vision_feature_layer: an index, negative from the end, or a list concatenated along
// hidden), the class token dropped for strategy "default", the projector, and for LLaVA-NeXT the
// base tile followed by the grid tiles rearranged spatially, unpadded to the original aspect and
// closed by image_newline per row. Built from an HF folder (llava_image_encoder.cpp) or an mmproj
// GGUF (mmproj_gguf.cpp) into the same parts.
#include <memory>
#include <utility>
#include <vector>

#include "af/models/image_encoder.hpp"
#include "models/llava_projector.hpp"
#include "models/vision_tower.hpp"

namespace af::models {

struct LlavaVisionSpec {
  VitSpec vit;
  std::vector<int64_t> select;  // hidden-state indices (0 .. vit.num_layers), concat order
  bool drop_class = true;       // vision_feature_select_strategy "default"
  ProjectorSpec projector;
  bool anyres = false;                                    // LLaVA-NeXT
  std::vector<std::pair<int, int>> image_grid_pinpoints;  // (height, width), anyres only

  int64_t deepest_layer() const;
  int64_t tokens_per_tile() const { return vit.tokens_per_tile() - (drop_class ? 1 : 0); }
};

// vision_feature_layer (an int or a list of ints, negative ones counted from the end of
// hidden_states, which has num_layers + 1 entries) -> indices; `field` names it in errors.
std::vector<int64_t> feature_layer_indices(const nlohmann::json& value, int64_t num_layers,
                                           const std::string& field);

// LLaVA-NeXT's unpad_image on a [rows, cols] feature grid of an image of orig_height x
// orig_width: the rows [row_begin, row_end) and columns [col_begin, col_end) kept.
struct UnpadRegion {
  int64_t row_begin = 0, row_end = 0, col_begin = 0, col_end = 0;
};
UnpadRegion unpad_region(int64_t orig_height, int64_t orig_width, int64_t rows, int64_t cols);

// The encoder made of these parts; vb_tower / vb_projector point at the weights by HF names,
// image_newline is [projector.out] (anyres) or empty.
std::unique_ptr<ImageEncoder> make_llava_image_encoder(
    LlavaVisionSpec spec, std::unique_ptr<modalities::ImageProcessor> processor,
    const nn::VarBuilder& vb_tower, const nn::VarBuilder& vb_projector,
    std::vector<float> image_newline, std::shared_ptr<Backend> backend, const LoadOptions& options);

// mmproj_gguf.cpp: the encoder of an mmproj GGUF (general.architecture "clip").
std::unique_ptr<ImageEncoder> load_mmproj_image_encoder(const io::ModelFiles& files,
                                                        std::shared_ptr<Backend> backend,
                                                        const LoadOptions& options);

}  // namespace af::models
