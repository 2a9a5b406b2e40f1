// SigLIP's vision tower (SiglipVisionModel as LLaVA uses it): no class token, no pre-norm, a
// biased patch conv, gelu_pytorch_tanh by default. Its attention-pooling head and post_layernorm
// do not feed LLaVA's feature layers and are not loaded.
#include "models/vision_tower.hpp"

namespace af::models {

VitSpec siglip_vision_spec(const io::HfConfig& c) {
  VitSpec defaults;  // SiglipVisionConfig's
  defaults.hidden = 768;
  defaults.intermediate = 3072;
  defaults.num_layers = 12;
  defaults.num_heads = 12;
  defaults.image_size = 224;
  defaults.patch_size = 16;
  defaults.eps = 1e-6;
  defaults.class_token = false;
  defaults.pre_norm = false;
  defaults.patch_bias = true;
  return vit_spec_from_config(c, defaults, "gelu_pytorch_tanh");
}

}  // namespace af::models
