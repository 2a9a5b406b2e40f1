#pragma once
// Vision towers with their projector: an image in, the rows that replace its placeholder tokens
// in the text model out (transformers' get_image_features after the projector, with LLaVA-NeXT's
// image_newline / unpadding arrangement). Built from an HF LLaVA / LLaVA-NeXT folder (its
// vision_config and projector keys) or from an mmproj GGUF written by llama.cpp's converter.
// A composition model (LLaVA) owns one of these beside its text decoder, on one shared backend.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "af/backend/backend.hpp"
#include "af/io/hf_config.hpp"
#include "af/io/model_files.hpp"
#include "af/modalities/image.hpp"
#include "af/modalities/image_processor.hpp"
#include "af/models/causal_lm.hpp"

namespace af::models {

struct ImageFeatures {
  int64_t n_tokens = 0;     // rows: the placeholder tokens this image becomes
  int64_t hidden = 0;       // the text model's hidden_size
  std::vector<float> rows;  // [n_tokens, hidden], row-major
  // Qwen2-VL: the image's image_grid_thw {t, h, w} in patches (its M-RoPE positions follow from
  // it); empty for other encoders.
  std::vector<int64_t> grid_thw;
};

class ImageEncoder {
 public:
  virtual ~ImageEncoder() = default;
  // The model's image processor (preprocessor_config.json, or the mmproj GGUF's metadata).
  virtual const modalities::ImageProcessor& processor() const = 0;
  // How many placeholder tokens `image` expands to, exactly as the HF processor counts them
  // (LLaVA-1.5: image_seq_length; LLaVA-NeXT: depends on the image size), without encoding.
  virtual int64_t num_image_tokens(const modalities::Image& image) const = 0;
  // Preprocesses and encodes one image: num_image_tokens(image) rows of output_hidden() floats.
  virtual ImageFeatures encode(const modalities::Image& image) = 0;
  // Width of the rows (the text model's hidden_size the projector maps to).
  virtual int64_t output_hidden() const = 0;
};

// The image encoder of a LLaVA-style checkpoint. `files` must outlive the encoder (weights are
// views into it); `backend` is shared with the text decoder. HF folders: config.json's
// "vision_config", "vision_feature_layer", "vision_feature_select_strategy",
// "projector_hidden_act", "multimodal_projector_bias", weights "model.vision_tower.*" and
// "model.multi_modal_projector.*" (transformers 5) or "vision_tower.*" / "multi_modal_projector.*"
// (older checkpoints); preprocessor_config.json beside config.json. GGUF: an mmproj file
// (general.architecture "clip") with llama.cpp's tensor names and keys.
std::unique_ptr<ImageEncoder> load_image_encoder(const io::ModelFiles& files,
                                                 const io::HfConfig& config,
                                                 std::shared_ptr<Backend> backend,
                                                 const LoadOptions& options);

}  // namespace af::models
