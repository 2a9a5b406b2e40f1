// An mmproj GGUF as llama.cpp's converters write it (general.architecture "clip", clip.vision.*
// keys, "v.*" / "mm.*" tensors), loaded into the same tower / projector / LLaVA-NeXT assembly as
// an HF folder by mapping its tensor names back to HF's. The mapping lives here rather than in
// io's table because it depends on the file: llama.cpp's LLaVA converter names CLIP's fc1
// "ffn_down" and fc2 "ffn_up" (swapped), its newer converters do not, so the shapes decide (as
// llama.cpp's clip.cpp does).
#include <map>
#include <optional>

#include "af/core/error.hpp"
#include "af/io/gguf.hpp"
#include "models/llava_image_encoder.hpp"

namespace af::models {
namespace {

constexpr const char* kComponent = "mmproj";

class Metadata {
 public:
  explicit Metadata(const io::GgufFile& file) : file_(file) {}
  bool has(const std::string& key) const { return file_.find(key) != nullptr; }
  const io::GgufValue& require(const std::string& key) const {
    const io::GgufValue* v = file_.find(key);
    AF_CHECK(v != nullptr, ErrorCode::kFormat, kComponent, file_.origin(),
             ": missing metadata key '", key, "'");
    return *v;
  }
  int64_t get_int(const std::string& key) const { return require(key).as_int(key); }
  double get_float(const std::string& key, double fallback) const {
    return has(key) ? require(key).as_float(key) : fallback;
  }
  bool get_bool(const std::string& key, bool fallback) const {
    return has(key) ? require(key).as_bool(key) : fallback;
  }
  std::string get_string(const std::string& key, const std::string& fallback) const {
    return has(key) ? require(key).as_string(key) : fallback;
  }
  std::vector<int64_t> ints(const std::string& key, size_t max) const {
    const io::GgufArray& a = require(key).as_array(key);
    AF_CHECK(a.size() <= max, ErrorCode::kFormat, kComponent, file_.origin(), ": '", key, "' has ",
             a.size(), " entries (at most ", max, ")");
    std::vector<int64_t> out;
    for (size_t i = 0; i < a.size(); ++i) out.push_back(a.int_at(i, key));
    return out;
  }
  std::vector<float> floats(const std::string& key, size_t n) const {
    const io::GgufArray& a = require(key).as_array(key);
    AF_CHECK(a.size() == n, ErrorCode::kFormat, kComponent, file_.origin(), ": '", key, "' has ",
             a.size(), " entries, expected ", n);
    std::vector<float> out;
    for (size_t i = 0; i < n; ++i) out.push_back(static_cast<float>(a.float_at(i, key)));
    return out;
  }
  const std::string& origin() const { return file_.origin(); }

 private:
  const io::GgufFile& file_;
};

// The mmproj's tensors under HF LLaVA names ("vision_tower.*", "multi_modal_projector.*",
// "image_newline").
class MmprojWeights final : public io::WeightSource {
 public:
  MmprojWeights(const io::WeightSource& stored, int64_t intermediate) : stored_(stored) {
    // fc1 is [intermediate, hidden]: whichever of ffn_up / ffn_down has that shape is fc1.
    const std::string up = "v.blk.0.ffn_up.weight";
    const bool swapped = stored.has(up) && stored.get(up).shape().rank() == 2 &&
                         stored.get(up).shape()[0] != intermediate;
    const std::map<std::string, std::string> fixed = {
        {"v.patch_embd", "vision_tower.embeddings.patch_embedding"},
        {"v.class_embd", "vision_tower.embeddings.class_embedding"},
        {"v.position_embd", "vision_tower.embeddings.position_embedding"},
        {"v.pre_ln", "vision_tower.pre_layrnorm"},
        {"mm.0", "multi_modal_projector.linear_1"},
        {"mm.2", "multi_modal_projector.linear_2"},
        {"model.image_newline", "image_newline"},
    };
    const std::map<std::string, std::string> block = {
        {"ln1", "layer_norm1"},
        {"ln2", "layer_norm2"},
        {"attn_q", "self_attn.q_proj"},
        {"attn_k", "self_attn.k_proj"},
        {"attn_v", "self_attn.v_proj"},
        {"attn_out", "self_attn.out_proj"},
        {"ffn_up", swapped ? "mlp.fc2" : "mlp.fc1"},
        {"ffn_down", swapped ? "mlp.fc1" : "mlp.fc2"},
    };
    for (const std::string& name : stored.names()) {
      const std::string hf = hf_name(name, fixed, block);
      if (!hf.empty()) to_gguf_[hf] = name;
    }
  }

  bool has(const std::string& hf) const override { return to_gguf_.count(hf) != 0; }
  Tensor get(const std::string& hf) const override {
    auto it = to_gguf_.find(hf);
    AF_CHECK(it != to_gguf_.end(), ErrorCode::kFormat, kComponent, stored_.origin(),
             ": no tensor for '", hf, "'");
    return stored_.get(it->second);
  }
  std::vector<std::string> names() const override {
    std::vector<std::string> out;
    for (const auto& [hf, gguf] : to_gguf_) out.push_back(hf);
    return out;
  }
  std::string origin() const override { return stored_.origin(); }

 private:
  // "" for tensors the encoder does not use.
  static std::string hf_name(const std::string& name,
                             const std::map<std::string, std::string>& fixed,
                             const std::map<std::string, std::string>& block) {
    std::string stem = name, suffix;
    for (const std::string s : {".weight", ".bias"}) {
      if (name.size() > s.size() && name.ends_with(s)) {
        stem = name.substr(0, name.size() - s.size()), suffix = s;
      }
    }
    if (auto it = fixed.find(stem); it != fixed.end()) return it->second + suffix;
    const std::string prefix = "v.blk.";
    if (!stem.starts_with(prefix)) return "";
    const size_t dot = stem.find('.', prefix.size());
    if (dot == std::string::npos) return "";
    const std::string layer = stem.substr(prefix.size(), dot - prefix.size());
    if (layer.empty() || layer.find_first_not_of("0123456789") != std::string::npos) return "";
    auto it = block.find(stem.substr(dot + 1));
    if (it == block.end()) return "";
    return "vision_tower.encoder.layers." + layer + "." + it->second + suffix;
  }

  const io::WeightSource& stored_;
  std::map<std::string, std::string> to_gguf_;
};

VitSpec vit_spec(const Metadata& md, const io::WeightSource& w) {
  VitSpec s;
  s.hidden = md.get_int("clip.vision.embedding_length");
  s.intermediate = md.get_int("clip.vision.feed_forward_length");
  s.num_layers = md.get_int("clip.vision.block_count");
  s.num_heads = md.get_int("clip.vision.attention.head_count");
  s.image_size = md.get_int("clip.vision.image_size");
  s.patch_size = md.get_int("clip.vision.patch_size");
  s.eps = md.get_float("clip.vision.attention.layer_norm_epsilon", 1e-5);
  AF_CHECK(!md.get_bool("clip.use_silu", false), ErrorCode::kUnsupported, kComponent, md.origin(),
           ": clip.use_silu (a SiLU vision tower) is not supported");
  s.act = md.get_bool("clip.use_gelu", false) ? GeluKind::kErf : GeluKind::kQuick;
  s.class_token = w.has("v.class_embd");
  s.pre_norm = w.has("v.pre_ln.weight");
  s.patch_bias = w.has("v.patch_embd.bias");
  s.validate(md.origin());
  return s;
}

// The processor llama.cpp's LLaVA path implies: CLIP's (shortest edge + center crop to
// image_size) with the file's mean/std, or LLaVA-NeXT's anyres with its pinpoints.
std::unique_ptr<modalities::ImageProcessor> processor_for(const Metadata& md,
                                                          const LlavaVisionSpec& spec) {
  modalities::ImageProcessorConfig c = spec.anyres ? modalities::LlavaNextImageProcessor::defaults()
                                                   : modalities::CLIPImageProcessor::defaults();
  const int side = static_cast<int>(spec.vit.image_size);
  c.shortest_edge = side;
  c.size_height = c.size_width = 0;
  c.do_center_crop = true;
  c.crop_height = c.crop_width = side;
  if (md.has("clip.vision.image_mean")) c.image_mean = md.floats("clip.vision.image_mean", 3);
  if (md.has("clip.vision.image_std")) c.image_std = md.floats("clip.vision.image_std", 3);
  for (const float v : c.image_std) {
    AF_CHECK(v > 0, ErrorCode::kFormat, kComponent, md.origin(),
             ": clip.vision.image_std must be positive");
  }
  c.image_grid_pinpoints = spec.image_grid_pinpoints;
  return modalities::ImageProcessor::from_config(c);
}

LlavaVisionSpec llava_spec(const Metadata& md, const io::WeightSource& stored) {
  LlavaVisionSpec s;
  s.vit = vit_spec(md, stored);
  const std::string type = md.get_string("clip.projector_type", "mlp");
  AF_CHECK(type == "mlp" || type == "linear", ErrorCode::kUnsupported, kComponent, md.origin(),
           ": clip.projector_type \"", type, "\" is not supported (mlp, linear are)");
  if (md.has("clip.vision.feature_layer")) {
    // Non-negative indices into hidden_states (0: the embeddings), as the converter writes them.
    nlohmann::json layers = nlohmann::json::array();
    for (const int64_t i : md.ints("clip.vision.feature_layer", 64)) layers.push_back(i);
    s.select = feature_layer_indices(layers, s.vit.num_layers,
                                     md.origin() + ": clip.vision.feature_layer");
  } else {
    s.select = {s.vit.num_layers};  // the converter kept the blocks up to the feature layer
  }
  // llama.cpp's LLaVA graph drops the class token (strategy "default") when the tower has one.
  s.drop_class = s.vit.class_token;
  AF_CHECK(stored.has("mm.0.weight"), ErrorCode::kFormat, kComponent, md.origin(),
           ": no projector tensor 'mm.0.weight'");
  const bool two = type == "mlp" && stored.has("mm.2.weight");
  s.projector.kind = two ? ProjectorSpec::Kind::kMlp2x : ProjectorSpec::Kind::kLinear;
  s.projector.in = s.vit.hidden * static_cast<int64_t>(s.select.size());
  s.projector.out = stored.get(two ? "mm.2.weight" : "mm.0.weight").shape()[0];
  s.projector.bias = stored.has("mm.0.bias");
  s.projector.act = GeluKind::kErf;  // HF's LlavaMultiModalProjector "gelu"
  if (md.has("clip.vision.image_grid_pinpoints")) {
    const std::vector<int64_t> flat = md.ints("clip.vision.image_grid_pinpoints", 512);
    AF_CHECK(!flat.empty() && flat.size() % 2 == 0, ErrorCode::kFormat, kComponent, md.origin(),
             ": clip.vision.image_grid_pinpoints must hold (height, width) pairs");
    for (size_t i = 0; i < flat.size(); i += 2) {
      AF_CHECK(flat[i] >= s.vit.image_size && flat[i + 1] >= s.vit.image_size && flat[i] <= 8192 &&
                   flat[i + 1] <= 8192,
               ErrorCode::kFormat, kComponent, md.origin(), ": image_grid_pinpoints entry ",
               flat[i], "x", flat[i + 1], " is not between image_size and 8192");
      s.image_grid_pinpoints.emplace_back(static_cast<int>(flat[i]), static_cast<int>(flat[i + 1]));
    }
    s.anyres = true;
  }
  return s;
}

}  // namespace

std::unique_ptr<ImageEncoder> load_mmproj_image_encoder(const io::ModelFiles& files,
                                                        std::shared_ptr<Backend> backend,
                                                        const LoadOptions& options) {
  AF_CHECK(files.gguf != nullptr, ErrorCode::kInvalidArgument, kComponent, files.path,
           ": not a GGUF file");
  const Metadata md(*files.gguf);
  const std::string arch = md.get_string("general.architecture", "");
  AF_CHECK(arch == "clip", ErrorCode::kInvalidArgument, kComponent, files.path,
           ": general.architecture is \"", arch,
           "\", not an mmproj (\"clip\"); pass the text "
           "model with -m and its mmproj with --mmproj");
  AF_CHECK(md.get_bool("clip.has_vision_encoder", true), ErrorCode::kFormat, kComponent, files.path,
           ": clip.has_vision_encoder is false");
  const LlavaVisionSpec spec = llava_spec(md, *files.weights);
  // The weights outlive this call through files (the caller keeps it, as load_image_encoder
  // requires); the adapter only renames, so it may go once the tensors are loaded.
  const MmprojWeights weights(*files.weights, spec.vit.intermediate);
  const nn::VarBuilder vb(weights);
  std::vector<float> newline;
  if (spec.anyres) newline = vb.f32("image_newline", {spec.projector.out});
  return make_llava_image_encoder(spec, processor_for(md, spec), vb.sub("vision_tower"),
                                  vb.sub("multi_modal_projector"), std::move(newline),
                                  std::move(backend), options);
}

}  // namespace af::models
