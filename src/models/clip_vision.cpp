// CLIP's vision tower (CLIPVisionModel as LLaVA uses it): class token, pre_layrnorm, quick_gelu
// by default; hidden states taken before post_layernorm, as LLaVA's feature layers are.
#include "models/vision_tower.hpp"

namespace af::models {

VitSpec clip_vision_spec(const io::HfConfig& c) {
  VitSpec s;
  s.hidden = c.get_int("hidden_size", 768);
  s.intermediate = c.get_int("intermediate_size", 3072);
  s.num_layers = c.get_int("num_hidden_layers", 12);
  s.num_heads = c.get_int("num_attention_heads", 12);
  s.image_size = c.get_int("image_size", 224);
  s.patch_size = c.get_int("patch_size", 32);
  s.channels = c.get_int("num_channels", 3);
  s.eps = c.get_float("layer_norm_eps", 1e-5);
  s.act = gelu_kind_from_name(c.get_string("hidden_act", "quick_gelu"),
                              c.origin() + ": vision_config.hidden_act");
  s.class_token = true;
  s.pre_norm = true;
  s.patch_bias = false;
  s.validate(c.origin() + " vision_config");
  return s;
}

}  // namespace af::models
