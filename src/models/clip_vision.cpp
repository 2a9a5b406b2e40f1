// CLIP's vision tower (CLIPVisionModel as LLaVA uses it): class token, pre_layrnorm, quick_gelu
// by default; hidden states taken before post_layernorm, as LLaVA's feature layers are.
#include "models/vision_tower.hpp"

namespace af::models {

VitSpec clip_vision_spec(const io::HfConfig& c) {
  VitSpec defaults;  // CLIPVisionConfig's
  defaults.hidden = 768;
  defaults.intermediate = 3072;
  defaults.num_layers = 12;
  defaults.num_heads = 12;
  defaults.image_size = 224;
  defaults.patch_size = 32;
  defaults.eps = 1e-5;
  defaults.class_token = true;
  defaults.pre_norm = true;
  defaults.patch_bias = false;
  return vit_spec_from_config(c, defaults, "quick_gelu");
}

}  // namespace af::models
