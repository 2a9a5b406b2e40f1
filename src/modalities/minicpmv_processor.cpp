// MiniCPMVImageProcessor (OpenBMB's image_processing_minicpmv.py) with Python's arithmetic: float
// division, int() truncation, round() half to even, math.log; PIL bicubic resizes and crops.
#include "af/modalities/minicpmv_processor.hpp"

#include <cfenv>
#include <cmath>
#include <limits>

#include "af/core/error.hpp"
#include "io/json_util.hpp"
#include "resample.hpp"

namespace af::modalities {
namespace {

using nlohmann::json;

// Bounds on the config: the pieces of one image hold about (max_slice_nums + 1) * scale^2
// pixels, so these keep a hostile preprocessor_config.json from asking for gigabytes.
constexpr int kMaxSlices = 64;
constexpr int kMaxScale = 4096;
constexpr int kMaxPatch = 1024;
constexpr int kMaxFeatureSize = 4096;
// Total patches of one image's pieces (an extreme aspect ratio stretches one side): 2^20 patches
// of 14 x 14 are 2.4 GB of floats; the released config makes at most ~10 * 32 * 32.
constexpr int64_t kMaxPatches = int64_t(1) << 20;

// Python's round(x) for the non-negative values used here: half to even.
int64_t py_round(double x) {
  const int saved = std::fegetround();
  std::fesetround(FE_TONEAREST);
  const double r = std::nearbyint(x);
  std::fesetround(saved);
  return int64_t(r);
}

// ensure_divide: max(round(length / patch) * patch, patch).
int64_t ensure_divide(double length, int64_t patch) {
  return std::max(py_round(length / double(patch)) * patch, patch);
}

// find_best_resize: (width, height) multiples of patch, scaled to about scale^2 pixels when the
// image is larger (or always with allow_upscale).
std::pair<int64_t, int64_t> find_best_resize(double width, double height, int scale, int patch,
                                             bool allow_upscale) {
  if (width * height > double(scale) * double(scale) || allow_upscale) {
    const double r = width / height;
    height = double(int64_t(double(scale) / std::sqrt(r)));  // int() truncates
    width = double(int64_t(height * r));
  }
  return {ensure_divide(width, patch), ensure_divide(height, patch)};
}

// get_refine_size: the size the sliced image is resized to before it is cut into the grid.
std::pair<int64_t, int64_t> refine_size(int width, int height, std::pair<int, int> grid, int scale,
                                        int patch) {
  const int64_t refine_w = ensure_divide(width, grid.first);
  const int64_t refine_h = ensure_divide(height, grid.second);
  const double cell_w = double(refine_w) / grid.first, cell_h = double(refine_h) / grid.second;
  const auto [best_w, best_h] = find_best_resize(cell_w, cell_h, scale, patch, true);
  return {best_w * grid.first, best_h * grid.second};
}

// Resizes with PIL bicubic, after checking the target's patches fit the limit (an extreme aspect
// ratio stretches one side, so the check comes before any pixel is allocated).
Image resize(const MiniCPMVConfig& c, const Image& image, int64_t width, int64_t height) {
  const int64_t patches = (width / c.patch_size) * (height / c.patch_size);
  AF_CHECK(width <= (int64_t(1) << 20) && height <= (int64_t(1) << 20) && patches <= kMaxPatches,
           ErrorCode::kInvalidArgument, "image", "MiniCPM-V: a ", image.width(), "x",
           image.height(), " image would be resized to ", width, "x", height, " (", patches,
           " patches; limit ", kMaxPatches, ")");
  // PIL returns a copy when the size is unchanged.
  if (width == image.width() && height == image.height()) return image;
  return resize_like_pil(image, int(width), int(height), Resample::kBicubic);
}

Image crop(const Image& image, int left, int top, int w, int h) {
  detail::Raster in{image.width(), image.height(), image.rgb()};
  detail::Raster out = detail::crop(in, top, left, h, w);
  return Image(out.width, out.height, std::move(out.rgb));
}

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
  void integer(const std::string& key, int lo, int hi, int& out) const {
    const json* v = find(key);
    if (!v) return;
    if (!v->is_number_integer() || v->get<int64_t>() < lo || v->get<int64_t>() > hi) {
      bad(key, "must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    out = v->get<int>();
  }
  void boolean(const std::string& key, bool& out) const {
    if (const json* v = find(key)) {
      if (!v->is_boolean()) bad(key, "must be true or false");
      out = v->get<bool>();
    }
  }
  void text(const std::string& key, std::string& out) const {
    if (const json* v = find(key)) {
      if (!v->is_string() || v->get<std::string>().empty()) bad(key, "must be a non-empty string");
      out = v->get<std::string>();
    }
  }
  void triple(const std::string& key, std::vector<float>& out, bool positive) const {
    const json* v = find(key);
    if (!v) return;
    if (!v->is_array() || v->size() != 3) bad(key, "must be a list of 3 numbers");
    out.clear();
    for (const json& e : *v) {
      if (!e.is_number() || !std::isfinite(e.get<double>()) || (positive && e.get<double>() == 0))
        bad(key, "must hold finite numbers (std non-zero)");
      out.push_back(float(e.get<double>()));  // numpy: np.array(mean, dtype=float32)
    }
  }
};

}  // namespace

MiniCPMVConfig parse_minicpmv_config(const std::string& json_text, const std::string& origin) {
  const json root = io::detail::parse_json(json_text, origin, "image");
  if (!root.is_object()) fail(ErrorCode::kFormat, "image", origin, ": not a JSON object");
  const Reader r{root, origin};
  MiniCPMVConfig c;
  r.integer("max_slice_nums", 1, kMaxSlices, c.max_slice_nums);
  r.integer("scale_resolution", 1, kMaxScale, c.scale_resolution);
  r.integer("patch_size", 1, kMaxPatch, c.patch_size);
  r.integer("image_feature_size", 1, kMaxFeatureSize, c.image_feature_size);
  r.boolean("slice_mode", c.slice_mode);
  r.boolean("use_image_id", c.use_image_id);
  r.text("im_start", c.im_start);
  r.text("im_end", c.im_end);
  r.text("slice_start", c.slice_start);
  r.text("slice_end", c.slice_end);
  r.text("unk", c.unk);
  r.text("im_id_start", c.im_id_start);
  r.text("im_id_end", c.im_id_end);
  r.triple("norm_mean", c.mean, false);
  r.triple("norm_std", c.std, true);
  return c;
}

std::optional<std::pair<int, int>> minicpmv_slice_grid(const MiniCPMVConfig& c, int width,
                                                       int height) {
  AF_CHECK(width > 0 && height > 0, ErrorCode::kInvalidArgument, "image", "MiniCPM-V: empty image");
  if (!c.slice_mode) return std::nullopt;
  const double log_ratio = std::log(double(width) / double(height));
  const double ratio =
      double(int64_t(width) * height) / (double(c.scale_resolution) * c.scale_resolution);
  const int multiple = int(std::min<double>(std::ceil(ratio), c.max_slice_nums));
  if (multiple <= 1) return std::nullopt;
  std::pair<int, int> best{1, 1};
  double min_error = std::numeric_limits<double>::infinity();
  for (int n : {multiple - 1, multiple, multiple + 1}) {
    if (n == 1 || n > c.max_slice_nums) continue;
    for (int m = 1; m <= n; ++m) {
      if (n % m != 0) continue;
      const double error = std::fabs(log_ratio - std::log(double(m) / double(n / m)));
      if (error < min_error) best = {m, n / m}, min_error = error;
    }
  }
  return best;
}

MiniCPMVPieces minicpmv_slice_image(const MiniCPMVConfig& c, const Image& image) {
  MiniCPMVPieces out;
  if (!c.slice_mode) {
    out.images.push_back(image);
    return out;
  }
  const int w = image.width(), h = image.height();
  out.grid = minicpmv_slice_grid(c, w, h);
  if (!out.grid) {
    const auto [bw, bh] = find_best_resize(w, h, c.scale_resolution, c.patch_size, true);
    out.images.push_back(resize(c, image, bw, bh));
    return out;
  }
  const auto [bw, bh] = find_best_resize(w, h, c.scale_resolution, c.patch_size, false);
  out.images.push_back(resize(c, image, bw, bh));
  const auto [rw, rh] = refine_size(w, h, *out.grid, c.scale_resolution, c.patch_size);
  const Image refined = resize(c, image, rw, rh);
  // split_to_patches: cells of int(width / columns) x int(height / rows), row by row.
  const int cell_w = int(rw / out.grid->first), cell_h = int(rh / out.grid->second);
  for (int y = 0; y < rh; y += cell_h) {
    for (int x = 0; x < rw; x += cell_w) out.images.push_back(crop(refined, x, y, cell_w, cell_h));
  }
  return out;
}

std::string minicpmv_placeholder(const MiniCPMVConfig& c, int width, int height, int image_index) {
  std::string unks;
  for (int i = 0; i < c.image_feature_size; ++i) unks += c.unk;
  std::string out;
  if (c.use_image_id) out += c.im_id_start + std::to_string(image_index) + c.im_id_end;
  out += c.im_start + unks + c.im_end;
  if (!c.slice_mode) return out;
  const auto grid = minicpmv_slice_grid(c, width, height);
  if (!grid) return out;
  const std::string slice = c.slice_start + unks + c.slice_end;
  for (int row = 0; row < grid->second; ++row) {
    if (row > 0) out += "\n";
    for (int col = 0; col < grid->first; ++col) out += slice;
  }
  return out;
}

MiniCPMVImageProcessor::MiniCPMVImageProcessor(MiniCPMVConfig config)
    : ImageProcessor([&] {
        ImageProcessorConfig base;
        base.type = "MiniCPMVImageProcessor";
        base.patch_size = config.patch_size;
        base.image_mean = config.mean;
        base.image_std = config.std;
        return base;
      }()),
      mc_(std::move(config)) {}

PixelValues MiniCPMVImageProcessor::preprocess(const Image& image) const {
  const MiniCPMVPieces pieces = minicpmv_slice_image(mc_, image);
  const int64_t p = mc_.patch_size;
  PixelValues pv;
  int64_t total = 0;  // patches over all pieces
  for (const Image& piece : pieces.images) {
    pv.tgt_sizes.push_back(piece.height() / p);
    pv.tgt_sizes.push_back(piece.width() / p);
    total += (piece.height() / p) * (piece.width() / p);
  }
  AF_CHECK(total <= kMaxPatches, ErrorCode::kInvalidArgument, "image", "MiniCPM-V: a ",
           image.width(), "x", image.height(), " image makes ", total, " patches (limit ",
           kMaxPatches, ")");
  // [3, p, total * p]: row r of channel ch holds, patch after patch, row r of each patch.
  const int64_t row_len = total * p;
  pv.shape = {3, p, row_len};
  pv.data.resize(size_t(3 * p * row_len));
  int64_t offset = 0;  // patches written so far
  for (const Image& piece : pieces.images) {
    const int64_t ph = piece.height() / p, pw = piece.width() / p, width = piece.width();
    const std::vector<uint8_t>& rgb = piece.rgb();
    for (int ch = 0; ch < 3; ++ch) {
      // astype(float32) / 255 then (x - mean) / std, all float32: a table over the uint8 input.
      float table[256];
      for (int v = 0; v < 256; ++v) table[v] = (float(v) / 255.0f - mc_.mean[ch]) / mc_.std[ch];
      for (int64_t r = 0; r < p; ++r) {
        float* dst = pv.data.data() + (ch * p + r) * row_len + offset * p;
        for (int64_t py = 0; py < ph; ++py) {
          const uint8_t* src = rgb.data() + ((py * p + r) * width) * 3 + ch;
          for (int64_t x = 0; x < pw * p; ++x) dst[(py * pw) * p + x] = table[src[x * 3]];
        }
      }
    }
    offset += ph * pw;
  }
  return pv;
}

}  // namespace af::modalities
