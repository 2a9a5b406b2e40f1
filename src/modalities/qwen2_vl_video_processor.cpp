// Qwen2VLVideoProcessor (transformers/models/qwen2_vl/video_processing_qwen2_vl.py): resize,
// fused rescale + normalise, patchify; and its configuration from the model's json.
#include "af/modalities/qwen2_vl_video_processor.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "af/core/error.hpp"
#include "io/json_util.hpp"
#include "resize_torch.hpp"

namespace af::modalities {
namespace {

using nlohmann::json;

// The processor's frame size: smart_resize of the video's (or the video's own size).
std::pair<int, int> target_size(const Video& video, const Qwen2VLVideoProcessorConfig& c) {
  if (!c.do_resize) return {video.height(), video.width()};
  return video_smart_resize(video.height(), video.width(), c.patch_size * c.merge_size,
                            double(c.min_pixels), double(c.max_pixels));
}

// One frame resized to height x width as float32 [H, W, 3]: uint8 frames (a list of images)
// through torch's uint8 resize, then the float cast; fetch_video's float frames in float32.
std::vector<float> resized_frame(const Image& f, bool float_frames, int height, int width) {
  if (width == f.width() && height == f.height()) return {f.rgb().begin(), f.rgb().end()};
  if (!float_frames) {
    const Image r = detail::resize_like_torch_bicubic_uint8(f, width, height);
    return {r.rgb().begin(), r.rgb().end()};
  }
  return detail::resize_like_torch_bicubic_f32({f.rgb().begin(), f.rgb().end()}, f.width(),
                                               f.height(), width, height);
}

// rescale_and_normalize: mean and std scaled by 1 / rescale_factor in float32 (fused), then
// (x - mean) / std in float32 as tvF.normalize computes it.
void normalize(std::vector<float>& f, const Qwen2VLVideoProcessorConfig& c) {
  std::array<float, 3> mean = c.image_mean, std = c.image_std;
  if (c.do_rescale && c.do_normalize) {
    const auto k = float(1.0 / c.rescale_factor);
    for (int i = 0; i < 3; ++i) mean[i] *= k, std[i] *= k;
  }
  for (size_t k = 0; k < f.size(); ++k) {
    if (c.do_normalize) {
      f[k] = (f[k] - mean[k % 3]) / std[k % 3];
    } else if (c.do_rescale) {
      f[k] = f[k] * float(c.rescale_factor);
    }
  }
}

// patchify: view(grid_t, T, C, gh/m, m, P, gw/m, m, P).permute(0, 3, 6, 4, 7, 2, 1, 5, 8), one
// temporal group at a time, so that only its T float frames exist beside the output.
VideoPixelValues patchify(const Video& video, const Qwen2VLVideoProcessorConfig& c) {
  const auto [height, width] = target_size(video, c);
  const int p = c.patch_size, m = c.merge_size, tp = c.temporal_patch_size;
  if (height % (p * m) != 0 || width % (p * m) != 0) {
    fail(ErrorCode::kInvalidArgument, "video", "frame size ", width, "x", height,
         " is not a multiple of patch_size * merge_size = ", p * m, " (do_resize is off)");
  }
  const int64_t frames = int64_t(video.frames().size());
  const int64_t grid_t = (frames + tp - 1) / tp;
  const int64_t gh = height / p, gw = width / p;
  const int64_t cols = int64_t(3) * tp * p * p;
  VideoPixelValues out;
  out.grid_thw = {grid_t, gh, gw};
  out.shape = {grid_t * gh * gw, cols};
  out.data.resize(size_t(grid_t * gh * gw * cols));
  float* dst = out.data.data();
  std::vector<std::vector<float>> group(static_cast<size_t>(tp));  // each [H, W, 3]
  for (int64_t t = 0; t < grid_t; ++t) {
    for (int k = 0; k < tp; ++k) {
      // Frames past the end repeat the last one (the temporal padding).
      const auto& f = video.frames()[size_t(std::min<int64_t>(t * tp + k, frames - 1))];
      group[size_t(k)] = resized_frame(f, video.float_frames(), height, width);
      normalize(group[size_t(k)], c);
    }
    for (int64_t hb = 0; hb < gh / m; ++hb) {
      for (int64_t wb = 0; wb < gw / m; ++wb) {
        for (int mh = 0; mh < m; ++mh) {
          for (int mw = 0; mw < m; ++mw) {
            const int64_t y0 = (hb * m + mh) * p, x0 = (wb * m + mw) * p;
            for (int ch = 0; ch < 3; ++ch) {
              for (int k = 0; k < tp; ++k) {
                for (int py = 0; py < p; ++py) {
                  const float* row =
                      group[size_t(k)].data() + (size_t(y0 + py) * width + x0) * 3 + ch;
                  for (int px = 0; px < p; ++px) *dst++ = row[size_t(px) * 3];
                }
              }
            }
          }
        }
      }
    }
  }
  return out;
}

struct ConfigReader {
  const json& root;
  const std::string& origin;

  [[noreturn]] void bad(const std::string& key, const std::string& what) const {
    fail(ErrorCode::kFormat, "video", origin, ": field \"", key, "\" ", what);
  }
  const json* find(const json& obj, const std::string& key) const {
    auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
  }
  void integer(const json& obj, const std::string& key, int64_t lo, int64_t hi, auto& out) const {
    if (const json* v = find(obj, key)) {
      if (!v->is_number_integer() || v->get<int64_t>() < lo || v->get<int64_t>() > hi) {
        bad(key, "must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
      }
      out = v->get<int64_t>();
    }
  }
  void boolean(const std::string& key, bool& out) const {
    if (const json* v = find(root, key)) {
      if (!v->is_boolean()) bad(key, "must be true or false");
      out = v->get<bool>();
    }
  }
  void triple(const std::string& key, std::array<float, 3>& out, bool positive) const {
    const json* v = find(root, key);
    if (!v) return;
    if (!v->is_array() || v->size() != 3) bad(key, "must be a list of 3 numbers");
    for (int i = 0; i < 3; ++i) {
      const json& x = (*v)[size_t(i)];
      if (!x.is_number() || (positive && !(x.get<double>() > 0))) {
        bad(key, positive ? "must hold 3 positive numbers" : "must hold 3 numbers");
      }
      out[size_t(i)] = float(x.get<double>());
    }
  }
};

constexpr int64_t kMaxPixels = 8192ll * 8192;

Qwen2VLVideoProcessorConfig parse_config(const json& root, const std::string& origin) {
  if (!root.is_object()) fail(ErrorCode::kFormat, "video", origin, ": not a JSON object");
  Qwen2VLVideoProcessorConfig c;
  const ConfigReader r{root, origin};
  r.integer(root, "patch_size", 1, 1024, c.patch_size);
  r.integer(root, "temporal_patch_size", 1, 64, c.temporal_patch_size);
  r.integer(root, "merge_size", 1, 64, c.merge_size);
  if (const json* size = r.find(root, "size")) {
    if (!size->is_object()) r.bad("size", "must be {\"shortest_edge\": n, \"longest_edge\": n}");
    r.integer(*size, "shortest_edge", 1, kMaxPixels, c.min_pixels);
    r.integer(*size, "longest_edge", 1, kMaxPixels, c.max_pixels);
  }
  // The older keys win, as Qwen2VLVideoProcessor.__init__ moves them into size.
  r.integer(root, "min_pixels", 1, kMaxPixels, c.min_pixels);
  r.integer(root, "max_pixels", 1, kMaxPixels, c.max_pixels);
  if (c.min_pixels > c.max_pixels) r.bad("min_pixels", "must not exceed max_pixels");
  r.boolean("do_resize", c.do_resize);
  r.boolean("do_rescale", c.do_rescale);
  r.boolean("do_normalize", c.do_normalize);
  if (const json* v = r.find(root, "rescale_factor")) {
    if (!v->is_number() || !(v->get<double>() > 0)) r.bad("rescale_factor", "must be positive");
    c.rescale_factor = v->get<double>();
  }
  r.triple("image_mean", c.image_mean, false);
  r.triple("image_std", c.image_std, true);
  return c;
}

}  // namespace

Qwen2VLVideoProcessor::Qwen2VLVideoProcessor(Qwen2VLVideoProcessorConfig config)
    : config_(config) {}

Qwen2VLVideoProcessor Qwen2VLVideoProcessor::from_json(const std::string& json_text,
                                                       const std::string& origin) {
  return Qwen2VLVideoProcessor(
      parse_config(io::detail::parse_json(json_text, origin, "video"), origin));
}

Qwen2VLVideoProcessor Qwen2VLVideoProcessor::load(const std::string& path) {
  std::filesystem::path file = path;
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec)) {
    file = std::filesystem::exists(file / "video_preprocessor_config.json", ec)
               ? file / "video_preprocessor_config.json"
               : file / "preprocessor_config.json";
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    fail(ErrorCode::kIo, "video", file.string(),
         ": cannot open (expected an HF folder holding video_preprocessor_config.json or "
         "preprocessor_config.json, or that file)");
  }
  std::ostringstream text;
  text << in.rdbuf();
  return from_json(text.str(), file.string());
}

VideoSampling Qwen2VLVideoProcessor::default_sampling() const {
  VideoSampling s;
  const int f = config_.patch_size * config_.merge_size;
  s.image_factor = f;
  s.frame_factor = config_.temporal_patch_size;
  s.min_pixels = int64_t(128) * f * f;
  s.max_pixels = int64_t(768) * f * f;
  s.total_pixels = 128000.0 * f * f * 0.9;
  return s;
}

VideoPixelValues Qwen2VLVideoProcessor::preprocess(const Video& video) const {
  if (video.frames().empty()) fail(ErrorCode::kInvalidArgument, "video", "the video has no frames");
  VideoPixelValues out = patchify(video, config_);
  out.second_per_grid_t = double(config_.temporal_patch_size) / video.sample_fps();
  return out;
}

}  // namespace af::modalities
