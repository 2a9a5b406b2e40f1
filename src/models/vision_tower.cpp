#include "models/vision_tower.hpp"

#include <algorithm>
#include <cmath>

#include "af/core/error.hpp"

namespace af::models {

void VitSpec::validate(const std::string& origin) const {
  AF_CHECK(hidden > 0 && intermediate > 0 && num_layers > 0 && num_heads > 0 && channels > 0,
           ErrorCode::kFormat, "vision", origin,
           ": hidden_size, intermediate_size, num_hidden_layers, num_attention_heads and "
           "num_channels must be positive");
  AF_CHECK(hidden % num_heads == 0, ErrorCode::kFormat, "vision", origin, ": hidden_size ", hidden,
           " is not a multiple of num_attention_heads ", num_heads);
  AF_CHECK(patch_size > 0 && image_size >= patch_size, ErrorCode::kFormat, "vision", origin,
           ": image_size ", image_size, " is smaller than one patch (patch_size ", patch_size, ")");
  // Bounds the embedding table and the per-tile buffers a hostile config could ask for (8192:
  // the image processors' largest side).
  AF_CHECK(image_size <= 8192 && grid() <= 1024, ErrorCode::kFormat, "vision", origin,
           ": image_size ", image_size, " / patch_size ", patch_size,
           " exceeds 8192 pixels or 1024 patches per side");
}

VitSpec vit_spec_from_config(const io::HfConfig& c, const VitSpec& defaults,
                             const std::string& default_act) {
  VitSpec s = defaults;
  s.hidden = c.get_int("hidden_size", defaults.hidden);
  s.intermediate = c.get_int("intermediate_size", defaults.intermediate);
  s.num_layers = c.get_int("num_hidden_layers", defaults.num_layers);
  s.num_heads = c.get_int("num_attention_heads", defaults.num_heads);
  s.image_size = c.get_int("image_size", defaults.image_size);
  s.patch_size = c.get_int("patch_size", defaults.patch_size);
  s.channels = c.get_int("num_channels", defaults.channels);
  s.eps = c.get_float("layer_norm_eps", defaults.eps);
  s.act = gelu_kind_from_name(c.get_string("hidden_act", default_act),
                              c.origin() + ": vision_config.hidden_act");
  s.validate(c.origin() + " vision_config");
  return s;
}

GeluKind gelu_kind_from_name(const std::string& name, const std::string& field) {
  if (name == "gelu") return GeluKind::kErf;
  if (name == "gelu_pytorch_tanh" || name == "gelu_new" || name == "gelu_fast") {
    return GeluKind::kTanh;
  }
  if (name == "quick_gelu") return GeluKind::kQuick;
  fail(ErrorCode::kUnsupported, "vision", field, " \"", name,
       "\" is not supported (gelu, gelu_pytorch_tanh, gelu_new, quick_gelu are)");
}

namespace {

VitLayer load_layer(const nn::VarBuilder& vb, const VitSpec& s) {
  VitLayer l;
  l.ln1_w = vb.sub("layer_norm1").f32("weight", {s.hidden});
  l.ln1_b = vb.sub("layer_norm1").f32("bias", {s.hidden});
  l.ln2_w = vb.sub("layer_norm2").f32("weight", {s.hidden});
  l.ln2_b = vb.sub("layer_norm2").f32("bias", {s.hidden});
  const nn::VarBuilder attn = vb.sub("self_attn");
  l.q = nn::Linear::load(attn.sub("q_proj"), s.hidden, s.hidden, true);
  l.k = nn::Linear::load(attn.sub("k_proj"), s.hidden, s.hidden, true);
  l.v = nn::Linear::load(attn.sub("v_proj"), s.hidden, s.hidden, true);
  l.out = nn::Linear::load(attn.sub("out_proj"), s.hidden, s.hidden, true);
  l.fc1 = nn::Linear::load(vb.sub("mlp").sub("fc1"), s.hidden, s.intermediate, true);
  l.fc2 = nn::Linear::load(vb.sub("mlp").sub("fc2"), s.intermediate, s.hidden, true);
  return l;
}

}  // namespace

VisionTower VisionTower::load(const nn::VarBuilder& vb, const VitSpec& spec, int64_t n_layers) {
  AF_CHECK(n_layers >= 0 && n_layers <= spec.num_layers, ErrorCode::kInvalidArgument, "vision",
           vb.path("encoder"), ": ", n_layers, " layers asked of ", spec.num_layers);
  VisionTower t;
  t.spec_ = spec;
  const nn::VarBuilder emb = vb.sub("embeddings");
  t.patch_ = nn::PatchEmbedding::load(emb.sub("patch_embedding"), spec.channels, spec.patch_size,
                                      spec.hidden, spec.patch_bias);
  if (spec.class_token) t.class_embedding_ = emb.f32("class_embedding", {spec.hidden});
  t.positions_ = emb.sub("position_embedding").f32("weight", {spec.tokens_per_tile(), spec.hidden});
  if (spec.pre_norm) {
    t.pre_w_ = vb.sub("pre_layrnorm").f32("weight", {spec.hidden});
    t.pre_b_ = vb.sub("pre_layrnorm").f32("bias", {spec.hidden});
  }
  for (int64_t i = 0; i < n_layers; ++i) {
    t.layers_.push_back(load_layer(vb.sub("encoder").sub("layers").sub(i), spec));
  }
  return t;
}

void VisionTower::prepare(Backend& be) {
  patch_.prepare(be);
  for (VitLayer& l : layers_) {
    for (nn::Linear* lin : {&l.q, &l.k, &l.v, &l.out, &l.fc1, &l.fc2}) lin->prepare(be);
  }
}

// x[n_tiles * tokens_per_tile, hidden]: per tile [class] + patches, plus positions.
void VisionTower::embed(Backend& be, const float* pixels, int64_t n_tiles, float* x) const {
  const int64_t h = spec_.hidden, tokens = spec_.tokens_per_tile();
  const int64_t first = spec_.class_token ? 1 : 0;
  const int64_t tile_floats = spec_.channels * spec_.image_size * spec_.image_size;
  std::vector<float> cols;
  for (int64_t t = 0; t < n_tiles; ++t) {
    float* tile = x + t * tokens * h;
    patch_.forward(be, pixels + t * tile_floats, spec_.image_size, spec_.image_size, cols,
                   tile + first * h);
    if (spec_.class_token) std::copy(class_embedding_.begin(), class_embedding_.end(), tile);
    be.add_scaled(tile, positions_.data(), 1.0f, tokens * h);
  }
  if (spec_.pre_norm) {
    be.layer_norm(x, pre_w_.data(), pre_b_.data(), n_tiles * tokens, h,
                  static_cast<float>(spec_.eps), x);
  }
}

void VisionTower::run_layer(Backend& be, const VitLayer& l, float* x, int64_t rows,
                            const AttentionMask& mask, std::vector<float>& scratch) const {
  const int64_t h = spec_.hidden, inter = spec_.intermediate;
  const int64_t head_dim = h / spec_.num_heads;
  const float eps = static_cast<float>(spec_.eps);
  scratch.resize(static_cast<size_t>(rows * (5 * h + inter)));
  float* normed = scratch.data();  // [rows, hidden]
  float* q = normed + rows * h;    // [rows, hidden] each
  float* k = q + rows * h;
  float* v = k + rows * h;
  float* attn = v + rows * h;    // [rows, hidden]
  float* ffn = attn + rows * h;  // [rows, intermediate]

  be.layer_norm(x, l.ln1_w.data(), l.ln1_b.data(), rows, h, eps, normed);
  const Backend::MatmulTarget qkv[] = {l.q.target(q), l.k.target(k), l.v.target(v)};
  be.matmul_group(normed, rows, qkv, 3);
  be.attention_rows(q, h, k, h, v, h, rows, rows, spec_.num_heads, spec_.num_heads, head_dim,
                    1.0f / std::sqrt(static_cast<float>(head_dim)), mask, attn);
  l.out.forward(be, attn, rows, normed);
  be.add_scaled(x, normed, 1.0f, rows * h);

  be.layer_norm(x, l.ln2_w.data(), l.ln2_b.data(), rows, h, eps, normed);
  l.fc1.forward(be, normed, rows, ffn);
  be.gelu(ffn, rows * inter, spec_.act);
  l.fc2.forward(be, ffn, rows, normed);
  be.add_scaled(x, normed, 1.0f, rows * h);
}

void VisionTower::run_layers(Backend& be, float* x, int64_t rows, const AttentionMask& mask) const {
  std::vector<float> scratch;
  for (const VitLayer& layer : layers_) run_layer(be, layer, x, rows, mask, scratch);
}

void VisionTower::forward(Backend& be, const float* pixels, int64_t n_tiles,
                          const std::vector<int64_t>& select, std::vector<float>& out) const {
  AF_CHECK(n_tiles > 0, ErrorCode::kInvalidArgument, "vision", "no image tiles to encode");
  const int64_t h = spec_.hidden, tokens = spec_.tokens_per_tile(), rows = n_tiles * tokens;
  const int64_t width = h * static_cast<int64_t>(select.size());
  int64_t deepest = 0;
  for (const int64_t s : select) {
    AF_CHECK(s >= 0 && s <= loaded_layers(), ErrorCode::kInvalidArgument, "vision", "hidden state ",
             s, " asked of a tower with ", loaded_layers(), " loaded layers");
    deepest = std::max(deepest, s);
  }
  std::vector<float> x(static_cast<size_t>(rows * h)), scratch;
  out.assign(static_cast<size_t>(rows * width), 0.0f);
  // Copies hidden state `index` (x as it is now) into the columns of each select entry naming it.
  const auto gather = [&](int64_t index) {
    for (size_t j = 0; j < select.size(); ++j) {
      if (select[j] != index) continue;
      for (int64_t r = 0; r < rows; ++r) {
        std::copy_n(x.data() + r * h, h, out.data() + r * width + static_cast<int64_t>(j) * h);
      }
    }
  };
  std::vector<int64_t> bounds(static_cast<size_t>(n_tiles + 1));
  for (int64_t t = 0; t <= n_tiles; ++t) bounds[static_cast<size_t>(t)] = t * tokens;
  AttentionMask mask;
  if (n_tiles > 1) mask = {AttentionMaskKind::kBlocks, 0, bounds.data(), n_tiles};

  embed(be, pixels, n_tiles, x.data());
  gather(0);
  for (int64_t i = 0; i < deepest; ++i) {
    run_layer(be, layers_[static_cast<size_t>(i)], x.data(), rows, mask, scratch);
    gather(i + 1);
  }
}

}  // namespace af::models
