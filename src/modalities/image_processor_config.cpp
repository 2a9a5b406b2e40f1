// preprocessor_config.json -> ImageProcessorConfig, with each processor class's defaults for the
// keys a file leaves out (as transformers' class attributes supply them).
#include <filesystem>
#include <fstream>
#include <sstream>

#include "af/core/error.hpp"
#include "af/modalities/image_processor.hpp"
#include "af/modalities/minicpmv_processor.hpp"
#include "io/json_util.hpp"

namespace af::modalities {
namespace {

using nlohmann::json;

// Sides beyond this are refused: no processor config has them, and they bound the memory a
// hostile config can request (8192^2 * 3 floats = 805 MB per tile at most).
constexpr int kMaxSide = 8192;
constexpr size_t kMaxPinpoints = 256;
// Qwen2-VL's max_pixels cap: the pixel values of one image are 3 * T * max_pixels floats (T = 2:
// 1.6 GB at this cap); the released checkpoints ask for at most 12845056.
constexpr int64_t kMaxQwenPixels = int64_t(kMaxSide) * kMaxSide;

const std::vector<float> kClipMean = {0.48145466f, 0.4578275f, 0.40821073f};
const std::vector<float> kClipStd = {0.26862954f, 0.26130258f, 0.27577711f};

struct Reader {
  const json& root;
  const std::string& origin;

  [[noreturn]] void bad(const std::string& key, const std::string& what) const {
    fail(ErrorCode::kFormat, "image", origin, ": field \"", key, "\" ", what);
  }
  const json* find(const std::string& key) const {
    auto it = root.find(key);
    return it == root.end() || it->is_null() ? nullptr : &*it;
  }
  void boolean(const std::string& key, bool& out) const {
    if (const json* v = find(key)) {
      if (!v->is_boolean()) bad(key, "must be true or false");
      out = v->get<bool>();
    }
  }
  int side(const json& v, const std::string& key) const {
    if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > kMaxSide) {
      bad(key, "must be an integer in [1, " + std::to_string(kMaxSide) + "]");
    }
    return v.get<int>();
  }
  // {"shortest_edge": n} | {"height": h, "width": w} | n (shortest edge, default_to_square=False)
  void size(int& shortest_edge, int& height, int& width) const {
    const json* v = find("size");
    if (!v) return;
    if (v->is_number()) {
      shortest_edge = side(*v, "size"), height = width = 0;
    } else if (v->is_object() && v->contains("shortest_edge")) {
      if (v->contains("longest_edge") && !(*v)["longest_edge"].is_null()) {
        fail(ErrorCode::kUnsupported, "image", origin, ": size.longest_edge is not supported");
      }
      shortest_edge = side((*v)["shortest_edge"], "size.shortest_edge"), height = width = 0;
    } else if (v->is_object() && v->contains("height") && v->contains("width")) {
      height = side((*v)["height"], "size.height"), width = side((*v)["width"], "size.width");
      shortest_edge = 0;
    } else {
      bad("size", "must be {\"shortest_edge\": n} or {\"height\": h, \"width\": w}");
    }
  }
  int64_t integer(const std::string& key, int64_t lo, int64_t hi, int64_t fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_number_integer() || v->get<int64_t>() < lo || v->get<int64_t>() > hi) {
      bad(key, "must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    return v->get<int64_t>();
  }
  // Qwen2-VL: size {"shortest_edge": min_pixels, "longest_edge": max_pixels} (pixel counts, not
  // sides), overridden by top-level min_pixels / max_pixels as the processor's __init__ does.
  void qwen2vl(ImageProcessorConfig& c) const {
    if (const json* v = find("size")) {
      if (!v->is_object()) bad("size", "must be {\"shortest_edge\": n, \"longest_edge\": n}");
      const Reader sub{*v, origin};
      c.min_pixels = sub.integer("shortest_edge", 1, kMaxQwenPixels, c.min_pixels);
      c.max_pixels = sub.integer("longest_edge", 1, kMaxQwenPixels, c.max_pixels);
      if (v->contains("min_pixels")) c.min_pixels = sub.integer("min_pixels", 1, kMaxQwenPixels, 0);
      if (v->contains("max_pixels")) c.max_pixels = sub.integer("max_pixels", 1, kMaxQwenPixels, 0);
    }
    c.min_pixels = integer("min_pixels", 1, kMaxQwenPixels, c.min_pixels);
    c.max_pixels = integer("max_pixels", 1, kMaxQwenPixels, c.max_pixels);
    if (c.min_pixels > c.max_pixels) {
      bad("min_pixels", "(" + std::to_string(c.min_pixels) + ") exceeds max_pixels (" +
                            std::to_string(c.max_pixels) + ")");
    }
    c.patch_size = int(integer("patch_size", 1, 1024, c.patch_size));
    c.temporal_patch_size = int(integer("temporal_patch_size", 1, 16, c.temporal_patch_size));
    c.merge_size = int(integer("merge_size", 1, 16, c.merge_size));
  }
  void crop_size(int& height, int& width) const {
    const json* v = find("crop_size");
    if (!v) return;
    if (v->is_number()) {
      height = width = side(*v, "crop_size");
    } else if (v->is_object() && v->contains("height") && v->contains("width")) {
      height = side((*v)["height"], "crop_size.height");
      width = side((*v)["width"], "crop_size.width");
    } else {
      bad("crop_size", "must be {\"height\": h, \"width\": w} or an integer");
    }
  }
  void triple(const std::string& key, std::vector<float>& out, bool positive) const {
    const json* v = find(key);
    if (!v) return;
    std::vector<double> values;
    if (v->is_number()) values.assign(3, v->get<double>());
    if (v->is_array() && v->size() == 3) {
      for (const json& e : *v) {
        if (!e.is_number()) bad(key, "must hold numbers");
        values.push_back(e.get<double>());
      }
    }
    if (values.size() != 3) bad(key, "must be a number or a list of 3 numbers");
    out.clear();
    for (double d : values) {
      if (!std::isfinite(d) || (positive && d == 0.0))
        bad(key, "must be finite (and std non-zero)");
      out.push_back(float(d));  // numpy: np.array(mean, dtype=float32)
    }
  }
  void pinpoints(std::vector<std::pair<int, int>>& out) const {
    const json* v = find("image_grid_pinpoints");
    if (!v) return;
    if (!v->is_array() || v->empty() || v->size() > kMaxPinpoints) {
      bad("image_grid_pinpoints", "must be a list of 1 to 256 [height, width] pairs");
    }
    out.clear();
    for (const json& p : *v) {
      if (!p.is_array() || p.size() != 2) bad("image_grid_pinpoints", "entries must be [h, w]");
      out.emplace_back(side(p[0], "image_grid_pinpoints"), side(p[1], "image_grid_pinpoints"));
    }
  }
};

std::string base_type(std::string type) {
  for (const char* suffix : {"Fast", "Pil"}) {
    const std::string s = suffix;
    if (type.size() > s.size() && type.compare(type.size() - s.size(), s.size(), s) == 0) {
      type.resize(type.size() - s.size());
    }
  }
  return type;
}

ImageProcessorConfig defaults_for(const std::string& type, const std::string& origin) {
  if (type == "CLIPImageProcessor") return CLIPImageProcessor::defaults();
  if (type == "SiglipImageProcessor") return SiglipImageProcessor::defaults();
  if (type == "LlavaNextImageProcessor") return LlavaNextImageProcessor::defaults();
  if (type == "Qwen2VLImageProcessor") return Qwen2VLImageProcessor::defaults();
  fail(ErrorCode::kUnsupported, "image", origin, ": image_processor_type \"", type,
       "\" is not supported (CLIPImageProcessor, SiglipImageProcessor, LlavaNextImageProcessor, "
       "Qwen2VLImageProcessor)");
}

ImageProcessorConfig parse_config(const json& root, const std::string& origin) {
  if (!root.is_object()) fail(ErrorCode::kFormat, "image", origin, ": not a JSON object");
  const Reader r{root, origin};
  const json* type = r.find("image_processor_type");
  if (!type || !type->is_string()) r.bad("image_processor_type", "is missing or not a string");
  ImageProcessorConfig c = defaults_for(base_type(type->get<std::string>()), origin);
  r.boolean("do_convert_rgb", c.do_convert_rgb);
  r.boolean("do_resize", c.do_resize);
  if (c.type == "Qwen2VLImageProcessor") {
    r.qwen2vl(c);
  } else {
    r.size(c.shortest_edge, c.size_height, c.size_width);
  }
  if (const json* v = r.find("resample")) {
    if (!v->is_number_integer() || v->get<int64_t>() < 1 || v->get<int64_t>() > 5) {
      r.bad("resample", "must be a PIL filter 1..5 (NEAREST is not supported)");
    }
    c.resample = static_cast<Resample>(v->get<int>());
  }
  r.boolean("do_center_crop", c.do_center_crop);
  r.crop_size(c.crop_height, c.crop_width);
  r.boolean("do_rescale", c.do_rescale);
  if (const json* v = r.find("rescale_factor")) {
    if (!v->is_number() || !std::isfinite(v->get<double>()))
      r.bad("rescale_factor", "not a number");
    c.rescale_factor = v->get<double>();
  }
  r.boolean("do_normalize", c.do_normalize);
  r.triple("image_mean", c.image_mean, false);
  r.triple("image_std", c.image_std, true);
  r.boolean("do_pad", c.do_pad);
  r.pinpoints(c.image_grid_pinpoints);
  if (c.do_center_crop && (c.crop_height == 0 || c.crop_width == 0)) {
    r.bad("crop_size", "is needed when do_center_crop is true");
  }
  return c;
}

}  // namespace

ImageProcessorConfig CLIPImageProcessor::defaults() {
  ImageProcessorConfig c;
  c.type = "CLIPImageProcessor";
  c.shortest_edge = 224;
  c.do_center_crop = true;
  c.crop_height = c.crop_width = 224;
  c.image_mean = kClipMean;
  c.image_std = kClipStd;
  return c;
}

ImageProcessorConfig SiglipImageProcessor::defaults() {
  ImageProcessorConfig c;
  c.type = "SiglipImageProcessor";
  c.size_height = c.size_width = 224;
  c.image_mean = {0.5f, 0.5f, 0.5f};
  c.image_std = {0.5f, 0.5f, 0.5f};
  return c;
}

ImageProcessorConfig LlavaNextImageProcessor::defaults() {
  ImageProcessorConfig c = CLIPImageProcessor::defaults();
  c.type = "LlavaNextImageProcessor";
  c.do_pad = true;
  c.image_grid_pinpoints = {{336, 672}, {672, 336}, {672, 672}, {1008, 336}, {336, 1008}};
  return c;
}

ImageProcessorConfig Qwen2VLImageProcessor::defaults() {
  ImageProcessorConfig c;
  c.type = "Qwen2VLImageProcessor";
  c.min_pixels = 56 * 56;
  c.max_pixels = 28 * 28 * 1280;
  c.patch_size = 14;
  c.temporal_patch_size = 2;
  c.merge_size = 2;
  c.image_mean = kClipMean;
  c.image_std = kClipStd;
  return c;
}

std::unique_ptr<ImageProcessor> ImageProcessor::from_config(const ImageProcessorConfig& config) {
  if (config.type == "CLIPImageProcessor") return std::make_unique<CLIPImageProcessor>(config);
  if (config.type == "SiglipImageProcessor") return std::make_unique<SiglipImageProcessor>(config);
  if (config.type == "LlavaNextImageProcessor") {
    AF_CHECK(!config.image_grid_pinpoints.empty(), ErrorCode::kInvalidArgument, "image",
             "LlavaNextImageProcessor needs image_grid_pinpoints");
    return std::make_unique<LlavaNextImageProcessor>(config);
  }
  if (config.type == "Qwen2VLImageProcessor") {
    AF_CHECK(config.patch_size > 0 && config.temporal_patch_size > 0 && config.merge_size > 0 &&
                 config.min_pixels > 0 && config.min_pixels <= config.max_pixels,
             ErrorCode::kInvalidArgument, "image",
             "Qwen2VLImageProcessor needs positive patch_size, temporal_patch_size, merge_size "
             "and 0 < min_pixels <= max_pixels");
    return std::make_unique<Qwen2VLImageProcessor>(config);
  }
  fail(ErrorCode::kUnsupported, "image", "image processor type \"", config.type,
       "\" is not supported");
}

std::unique_ptr<ImageProcessor> ImageProcessor::from_json(const std::string& json_text,
                                                          const std::string& origin) {
  const json root = io::detail::parse_json(json_text, origin, "image");
  const auto type = root.is_object() ? root.find("image_processor_type") : root.end();
  if (type != root.end() && *type == "MiniCPMVImageProcessor") {  // its own keys
    return std::make_unique<MiniCPMVImageProcessor>(parse_minicpmv_config(json_text, origin));
  }
  return from_config(parse_config(root, origin));
}

std::unique_ptr<ImageProcessor> ImageProcessor::load(const std::string& path) {
  std::filesystem::path file = path;
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec)) file /= "preprocessor_config.json";
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    fail(ErrorCode::kIo, "image", file.string(),
         ": cannot open (expected an HF folder holding preprocessor_config.json, or that file)");
  }
  std::ostringstream text;
  text << in.rdbuf();
  return from_json(text.str(), file.string());
}

}  // namespace af::modalities
