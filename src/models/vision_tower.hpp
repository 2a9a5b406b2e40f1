#pragma once
// The ViT encoder shared by CLIP and SigLIP vision towers: patch embedding (+ class token) +
// position embedding (+ CLIP's pre-layernorm), then pre-norm encoder layers
//   x += out_proj(attention(layer_norm1(x)));  x += fc2(act(fc1(layer_norm2(x))))
// with full (non-causal) attention inside each image tile. clip_vision.cpp and siglip_vision.cpp
// parse their configs into VitSpec and load the weights by HF names.
#include <cstdint>
#include <vector>

#include "af/backend/backend.hpp"
#include "af/io/hf_config.hpp"
#include "af/nn/layers.hpp"
#include "af/nn/patch_embed.hpp"
#include "af/nn/var_builder.hpp"

namespace af::models {

struct VitSpec {
  int64_t hidden = 0, intermediate = 0, num_layers = 0, num_heads = 0;
  int64_t image_size = 0, patch_size = 0, channels = 3;
  double eps = 1e-5;
  GeluKind act = GeluKind::kQuick;
  bool class_token = false;  // CLIP: a learned row before the patches
  bool pre_norm = false;     // CLIP: pre_layrnorm on the embeddings
  bool patch_bias = false;   // SigLIP's patch conv has a bias, CLIP's has none

  int64_t grid() const { return image_size / patch_size; }
  int64_t tokens_per_tile() const { return grid() * grid() + (class_token ? 1 : 0); }
  // Checks the sizes are usable; `origin` names the config in errors.
  void validate(const std::string& origin) const;
};

// The keys every HF ViT vision config shares (hidden_size, ..., hidden_act), each defaulting to
// the value in `defaults` (the config class's own defaults); the structural flags (class_token,
// pre_norm, patch_bias) are copied from `defaults`. Validated; errors name the config.
VitSpec vit_spec_from_config(const io::HfConfig& vision_config, const VitSpec& defaults,
                             const std::string& default_act);

// The activation named by an HF "hidden_act" / "projector_hidden_act" value; `field` names the
// key in the error for an unknown one.
GeluKind gelu_kind_from_name(const std::string& name, const std::string& field);

struct VitLayer {
  std::vector<float> ln1_w, ln1_b, ln2_w, ln2_b;  // [hidden]
  nn::Linear q, k, v, out;                        // [hidden, hidden]
  nn::Linear fc1;                                 // [intermediate, hidden]
  nn::Linear fc2;                                 // [hidden, intermediate]
};

class VisionTower {
 public:
  // vb points at the tower (its "embeddings.*", "encoder.layers.*", CLIP's "pre_layrnorm.*").
  // Only the first n_layers encoder layers are loaded (the deepest selected feature layer).
  static VisionTower load(const nn::VarBuilder& vb, const VitSpec& spec, int64_t n_layers);
  void prepare(Backend& be);
  const VitSpec& spec() const { return spec_; }
  int64_t loaded_layers() const { return static_cast<int64_t>(layers_.size()); }

  // Encodes n_tiles tiles pixels[n_tiles, channels, image_size, image_size] in one pass (tiles
  // attend only within themselves) and gathers hidden states: out[n_tiles * tokens_per_tile,
  // hidden * select.size()], columns [j * hidden, (j + 1) * hidden) holding hidden_states
  // [select[j]] as HF counts them (0: the embeddings, i: after encoder layer i; every select[j]
  // in 0 .. loaded_layers()).
  void forward(Backend& be, const float* pixels, int64_t n_tiles,
               const std::vector<int64_t>& select, std::vector<float>& out) const;

  // Navit towers (MiniCPM-V) embed pieces of any size themselves with these, then run every
  // loaded layer over x[rows, hidden] in place, attention masked as `mask` says.
  const nn::PatchEmbedding& patch_embedding() const { return patch_; }
  const std::vector<float>& position_table() const { return positions_; }  // [grid^2, hidden]
  void run_layers(Backend& be, float* x, int64_t rows, const AttentionMask& mask) const;

 private:
  void embed(Backend& be, const float* pixels, int64_t n_tiles, float* x) const;
  void run_layer(Backend& be, const VitLayer& layer, float* x, int64_t rows,
                 const AttentionMask& mask, std::vector<float>& scratch) const;

  VitSpec spec_;
  nn::PatchEmbedding patch_;
  std::vector<float> class_embedding_;  // [hidden] (CLIP)
  std::vector<float> positions_;        // [tokens_per_tile, hidden]
  std::vector<float> pre_w_, pre_b_;    // [hidden] (CLIP pre_layrnorm)
  std::vector<VitLayer> layers_;
};

// clip_vision.cpp: CLIPVisionConfig keys (defaults as transformers' class) and the tower's
// weights at vb.
VitSpec clip_vision_spec(const io::HfConfig& vision_config);
// siglip_vision.cpp: SiglipVisionConfig keys.
VitSpec siglip_vision_spec(const io::HfConfig& vision_config);

}  // namespace af::models
