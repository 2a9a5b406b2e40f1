#include "models/llava_image_encoder.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "af/core/error.hpp"
#include "af/io/model_files.hpp"
#include "models/minicpmv.hpp"
#include "models/qwen2_vl_vision.hpp"

namespace af::models {

int64_t LlavaVisionSpec::deepest_layer() const {
  int64_t deepest = 0;
  for (const int64_t s : select) deepest = std::max(deepest, s);
  return deepest;
}

std::vector<int64_t> feature_layer_indices(const nlohmann::json& value, int64_t num_layers,
                                           const std::string& field) {
  std::vector<nlohmann::json> entries;
  if (value.is_array()) {
    entries.assign(value.begin(), value.end());
  } else {
    entries.push_back(value);
  }
  AF_CHECK(!entries.empty() && entries.size() <= 64, ErrorCode::kFormat, "vision", field,
           " must be an integer or a list of 1 to 64 integers");
  std::vector<int64_t> out;
  for (const nlohmann::json& e : entries) {
    AF_CHECK(e.is_number_integer(), ErrorCode::kFormat, "vision", field,
             " must be an integer or a list of integers");
    const int64_t raw = e.get<int64_t>();
    // hidden_states holds the embeddings and one entry per layer: python indexing over it.
    const int64_t index = raw < 0 ? raw + num_layers + 1 : raw;
    AF_CHECK(index >= 0 && index <= num_layers, ErrorCode::kFormat, "vision", field, " ", raw,
             " is out of range for a tower of ", num_layers, " layers");
    out.push_back(index);
  }
  return out;
}

UnpadRegion unpad_region(int64_t orig_height, int64_t orig_width, int64_t rows, int64_t cols) {
  // transformers: int(round(x, 7)); rounding to 7 decimals first keeps 41.99999999 at 42.
  const auto round7 = [](double x) { return static_cast<int64_t>(std::round(x * 1e7) / 1e7); };
  UnpadRegion r{0, rows, 0, cols};
  const double orig_aspect = static_cast<double>(orig_width) / static_cast<double>(orig_height);
  const double cur_aspect = static_cast<double>(cols) / static_cast<double>(rows);
  if (orig_aspect > cur_aspect) {
    const double scale = static_cast<double>(cols) / static_cast<double>(orig_width);
    const int64_t padding = (rows - round7(static_cast<double>(orig_height) * scale)) / 2;
    r.row_begin = padding, r.row_end = rows - padding;
  } else {
    const double scale = static_cast<double>(rows) / static_cast<double>(orig_height);
    const int64_t padding = (cols - round7(static_cast<double>(orig_width) * scale)) / 2;
    r.col_begin = padding, r.col_end = cols - padding;
  }
  return r;
}

namespace {

class LlavaImageEncoder : public ImageEncoder {
 public:
  LlavaImageEncoder(LlavaVisionSpec spec, std::unique_ptr<modalities::ImageProcessor> processor,
                    VisionTower tower, LlavaProjector projector, std::vector<float> newline,
                    std::shared_ptr<Backend> backend)
      : spec_(std::move(spec)),
        processor_(std::move(processor)),
        tower_(std::move(tower)),
        projector_(std::move(projector)),
        newline_(std::move(newline)),
        backend_(std::move(backend)) {}

  const modalities::ImageProcessor& processor() const override { return *processor_; }
  int64_t output_hidden() const override { return spec_.projector.out; }

  int64_t num_image_tokens(const modalities::Image& image) const override {
    if (!spec_.anyres) return spec_.tokens_per_tile();
    const Grid g = grid_of(image);
    const UnpadRegion r = unpad_region(image.height(), image.width(), g.rows(), g.cols());
    const int64_t kept_rows = r.row_end - r.row_begin, kept_cols = r.col_end - r.col_begin;
    return spec_.tokens_per_tile() + kept_rows * (kept_cols + 1);
  }

  ImageFeatures encode(const modalities::Image& image) override {
    const modalities::PixelValues pv = processor_->preprocess(image);
    const int64_t n_tiles = check_tiles(pv);
    std::vector<float> hidden;
    tower_.forward(*backend_, pv.data.data(), n_tiles, spec_.select, hidden);
    const int64_t per_tile = spec_.tokens_per_tile(), in = spec_.projector.in;
    if (spec_.drop_class) drop_first_row_per_tile(hidden, n_tiles, per_tile + 1, in);
    std::vector<float> projected(static_cast<size_t>(n_tiles * per_tile * spec_.projector.out));
    projector_.forward(*backend_, hidden.data(), n_tiles * per_tile, projected.data());
    ImageFeatures f;
    f.hidden = spec_.projector.out;
    f.rows = spec_.anyres ? pack_anyres(image, projected, n_tiles) : std::move(projected);
    f.n_tokens = static_cast<int64_t>(f.rows.size()) / f.hidden;
    return f;
  }

 private:
  struct Grid {
    int64_t tiles_high = 1, tiles_wide = 1, side = 1;  // side: patches per tile side
    int64_t rows() const { return tiles_high * side; }
    int64_t cols() const { return tiles_wide * side; }
  };

  // get_anyres_image_grid_shape: the best pinpoint in tiles of vision image_size.
  Grid grid_of(const modalities::Image& image) const {
    const auto [best_h, best_w] = modalities::select_best_resolution(image.height(), image.width(),
                                                                     spec_.image_grid_pinpoints);
    return {best_h / spec_.vit.image_size, best_w / spec_.vit.image_size, spec_.vit.grid()};
  }

  int64_t check_tiles(const modalities::PixelValues& pv) const {
    const size_t rank = pv.shape.size();
    AF_CHECK(rank == 3 || rank == 4, ErrorCode::kInternal, "vision", "pixel values of rank ", rank);
    const int64_t s = spec_.vit.image_size;
    AF_CHECK(pv.shape[rank - 3] == spec_.vit.channels && pv.shape[rank - 2] == s &&
                 pv.shape[rank - 1] == s,
             ErrorCode::kInvalidArgument, "vision", "the image processor makes ",
             pv.shape[rank - 2], "x", pv.shape[rank - 1], " tiles but the vision tower takes ", s,
             "x", s, " (preprocessor_config.json and vision_config.image_size disagree)");
    const int64_t n = rank == 4 ? pv.shape[0] : 1;
    AF_CHECK(spec_.anyres || n == 1, ErrorCode::kInvalidArgument, "vision",
             "the image processor makes ", n, " tiles for a single-tile (LLaVA-1.5) model");
    return n;
  }

  static void drop_first_row_per_tile(std::vector<float>& x, int64_t n_tiles, int64_t rows,
                                      int64_t width) {
    float* dst = x.data();
    for (int64_t t = 0; t < n_tiles; ++t) {
      const float* src = x.data() + (t * rows + 1) * width;
      dst = std::copy(src, src + (rows - 1) * width, dst);
    }
    x.resize(static_cast<size_t>(n_tiles * (rows - 1) * width));
  }

  // pack_image_features for one image: base tile, then the grid tiles as one spatial map,
  // unpadded, each row closed by image_newline.
  std::vector<float> pack_anyres(const modalities::Image& image, const std::vector<float>& proj,
                                 int64_t n_tiles) const {
    const int64_t hid = spec_.projector.out, per_tile = spec_.tokens_per_tile();
    std::vector<float> out(proj.begin(), proj.begin() + per_tile * hid);
    if (n_tiles == 1) {
      out.insert(out.end(), newline_.begin(), newline_.end());
      return out;
    }
    const Grid g = grid_of(image);
    AF_CHECK(per_tile == g.side * g.side, ErrorCode::kUnsupported, "vision",
             "LLaVA-NeXT packing needs one feature per patch (", g.side * g.side, "), got ",
             per_tile, " per tile (strategy \"full\" with a class token?)");
    AF_CHECK(n_tiles == 1 + g.tiles_high * g.tiles_wide, ErrorCode::kInvalidArgument, "vision",
             "the image processor made ", n_tiles, " tiles; the model's image_grid_pinpoints give ",
             1 + g.tiles_high * g.tiles_wide);
    const UnpadRegion r = unpad_region(image.height(), image.width(), g.rows(), g.cols());
    for (int64_t y = r.row_begin; y < r.row_end; ++y) {
      for (int64_t x = r.col_begin; x < r.col_end; ++x) {
        const int64_t tile = 1 + (y / g.side) * g.tiles_wide + x / g.side;
        const int64_t token = (y % g.side) * g.side + x % g.side;
        const float* row = proj.data() + (tile * per_tile + token) * hid;
        out.insert(out.end(), row, row + hid);
      }
      out.insert(out.end(), newline_.begin(), newline_.end());
    }
    return out;
  }

  LlavaVisionSpec spec_;
  std::unique_ptr<modalities::ImageProcessor> processor_;
  VisionTower tower_;
  LlavaProjector projector_;
  std::vector<float> newline_;  // [projector.out] (anyres)
  std::shared_ptr<Backend> backend_;
};

// The folder's image processor: preprocessor_config.json, or transformers 5's
// processor_config.json with an "image_processor" object.
std::unique_ptr<modalities::ImageProcessor> load_processor(const std::string& model_path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path dir =
      fs::is_directory(model_path, ec) ? fs::path(model_path) : fs::path(model_path).parent_path();
  if (fs::exists(dir / "preprocessor_config.json", ec)) {
    return modalities::ImageProcessor::load((dir / "preprocessor_config.json").string());
  }
  const fs::path proc = dir / "processor_config.json";
  AF_CHECK(fs::exists(proc, ec), ErrorCode::kFormat, "vision", dir.string(),
           ": no preprocessor_config.json or processor_config.json beside config.json");
  const nlohmann::json j = io::read_json_file(proc.string());
  AF_CHECK(j.is_object() && j.contains("image_processor") && j["image_processor"].is_object(),
           ErrorCode::kFormat, "vision", proc.string(), ": no \"image_processor\" object");
  return modalities::ImageProcessor::from_json(j["image_processor"].dump(),
                                               proc.string() + " image_processor");
}

// The first prefix under which `probe` exists.
std::string find_prefix(const io::WeightSource& w, const std::vector<std::string>& prefixes,
                        const std::string& probe, const std::string& what) {
  for (const std::string& p : prefixes) {
    if (w.has(p + "." + probe)) return p;
  }
  fail(ErrorCode::kFormat, "vision", w.origin(), ": no ", what, " weights (looked for ",
       prefixes.front(), ".", probe, " and the other known prefixes)");
}

LlavaVisionSpec spec_from_hf(const io::HfConfig& config) {
  const std::optional<io::HfConfig> vc = config.object("vision_config");
  AF_CHECK(vc.has_value(), ErrorCode::kFormat, "vision", config.origin(),
           ": no \"vision_config\" (not a LLaVA-style checkpoint)");
  const std::string type = vc->get_string("model_type", "clip_vision_model");
  LlavaVisionSpec s;
  if (type == "clip_vision_model") {
    s.vit = clip_vision_spec(*vc);
  } else if (type == "siglip_vision_model") {
    s.vit = siglip_vision_spec(*vc);
  } else {
    fail(ErrorCode::kUnsupported, "vision", config.origin(), ": vision_config.model_type \"", type,
         "\" is not supported (clip_vision_model, siglip_vision_model are)");
  }
  const nlohmann::json& j = config.json();
  s.select = feature_layer_indices(
      j.contains("vision_feature_layer") ? j["vision_feature_layer"] : nlohmann::json(-2),
      s.vit.num_layers, config.origin() + ": vision_feature_layer");
  const std::string strategy = config.get_string("vision_feature_select_strategy", "default");
  AF_CHECK(strategy == "default" || strategy == "full", ErrorCode::kUnsupported, "vision",
           config.origin(), ": vision_feature_select_strategy \"", strategy,
           "\" (default and full are supported)");
  s.drop_class = strategy == "default";
  const std::optional<io::HfConfig> tc = config.object("text_config");
  AF_CHECK(tc.has_value(), ErrorCode::kFormat, "vision", config.origin(), ": no \"text_config\"");
  s.projector.in = s.vit.hidden * static_cast<int64_t>(s.select.size());
  s.projector.out = tc->get_int("hidden_size");
  s.projector.bias = config.get_bool("multimodal_projector_bias", true);
  s.projector.act = gelu_kind_from_name(config.get_string("projector_hidden_act", "gelu"),
                                        config.origin() + ": projector_hidden_act");
  s.anyres = config.architecture() == "LlavaNextForConditionalGeneration";
  if (s.anyres) {
    const nlohmann::json& pins =
        j.contains("image_grid_pinpoints") ? j["image_grid_pinpoints"] : nlohmann::json();
    AF_CHECK(pins.is_array() && !pins.empty() && pins.size() <= 256, ErrorCode::kFormat, "vision",
             config.origin(), ": image_grid_pinpoints must be a list of 1 to 256 [height, width]");
    for (const nlohmann::json& p : pins) {
      AF_CHECK(p.is_array() && p.size() == 2 && p[0].is_number_integer() &&
                   p[1].is_number_integer() && p[0].get<int64_t>() >= s.vit.image_size &&
                   p[1].get<int64_t>() >= s.vit.image_size && p[0].get<int64_t>() <= 8192 &&
                   p[1].get<int64_t>() <= 8192,
               ErrorCode::kFormat, "vision", config.origin(), ": image_grid_pinpoints entry ",
               p.dump(), " is not [height, width] between image_size and 8192");
      s.image_grid_pinpoints.emplace_back(p[0].get<int>(), p[1].get<int>());
    }
  }
  return s;
}

std::unique_ptr<ImageEncoder> load_hf_image_encoder(const io::ModelFiles& files,
                                                    const io::HfConfig& config,
                                                    std::shared_ptr<Backend> backend,
                                                    const LoadOptions& options) {
  const LlavaVisionSpec spec = spec_from_hf(config);
  const io::WeightSource& w = *files.weights;
  std::string tower = find_prefix(w, {"model.vision_tower", "vision_tower"},
                                  "embeddings.patch_embedding.weight", "vision tower");
  if (w.has(tower + ".vision_model.embeddings.patch_embedding.weight")) tower += ".vision_model";
  const std::string proj = find_prefix(w, {"model.multi_modal_projector", "multi_modal_projector"},
                                       "linear_1.weight", "multi_modal_projector");
  const nn::VarBuilder vb(w);
  std::vector<float> newline;
  if (spec.anyres) {
    const std::string nl = w.has("model.image_newline") ? "model.image_newline" : "image_newline";
    newline = vb.f32(nl, {spec.projector.out});
  }
  return make_llava_image_encoder(spec, load_processor(files.path), vb.sub(tower), vb.sub(proj),
                                  std::move(newline), std::move(backend), options);
}

}  // namespace

std::unique_ptr<ImageEncoder> make_llava_image_encoder(
    LlavaVisionSpec spec, std::unique_ptr<modalities::ImageProcessor> processor,
    const nn::VarBuilder& vb_tower, const nn::VarBuilder& vb_projector,
    std::vector<float> image_newline, std::shared_ptr<Backend> backend,
    const LoadOptions& options) {
  AF_CHECK(backend != nullptr, ErrorCode::kInvalidArgument, "vision", "no backend");
  VisionTower tower = VisionTower::load(vb_tower, spec.vit, spec.deepest_layer());
  LlavaProjector projector = LlavaProjector::load(vb_projector, spec.projector);
  if (options.repack_weights) {
    tower.prepare(*backend);
    projector.prepare(*backend);
  }
  return std::make_unique<LlavaImageEncoder>(std::move(spec), std::move(processor),
                                             std::move(tower), std::move(projector),
                                             std::move(image_newline), std::move(backend));
}

std::unique_ptr<ImageEncoder> load_image_encoder(const io::ModelFiles& files,
                                                 const io::HfConfig& config,
                                                 std::shared_ptr<Backend> backend,
                                                 const LoadOptions& options) {
  AF_CHECK(files.weights != nullptr, ErrorCode::kInvalidArgument, "vision", files.path,
           ": no weights");
  if (files.format == "gguf") return load_mmproj_image_encoder(files, std::move(backend), options);
  if (is_qwen2_vl_architecture(config.architecture()))
    return load_qwen2_vl_vision(files, config, std::move(backend), options);
  if (config.architecture() == "MiniCPMV")
    return load_minicpmv_encoder(files, config, std::move(backend), options);
  return load_hf_image_encoder(files, config, std::move(backend), options);
}

}  // namespace af::models
