// SigLIP's vision tower (SiglipVisionModel as LLaVA uses it): no class token, no pre-norm, a
// biased patch conv, gelu_pytorch_tanh by default. Its attention-pooling head and post_layernorm
// do not feed LLaVA's feature layers and are not loaded.
#include "models/vision_tower.hpp"

namespace af::models {

VitSpec siglip_vision_spec(const io::HfConfig& c) {
  VitSpec s;
  s.hidden = c.get_int("hidden_size", 768);
  s.intermediate = c.get_int("intermediate_size", 3072);
  s.num_layers = c.get_int("num_hidden_layers", 12);
  s.num_heads = c.get_int("num_attention_heads", 12);
  s.image_size = c.get_int("image_size", 224);
  s.patch_size = c.get_int("patch_size", 16);
  s.channels = c.get_int("num_channels", 3);
  s.eps = c.get_float("layer_norm_eps", 1e-6);
  s.act = gelu_kind_from_name(c.get_string("hidden_act", "gelu_pytorch_tanh"),
                              c.origin() + ": vision_config.hidden_act");
  s.class_token = false;
  s.pre_norm = false;
  s.patch_bias = true;
  s.validate(c.origin() + " vision_config");
  return s;
}

}  // namespace af::models
