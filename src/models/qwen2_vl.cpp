// Qwen2-VL / Qwen2.5-VL (Qwen2VLForConditionalGeneration, Qwen2_5_VLForConditionalGeneration):
// the vision tower + PatchMerger (qwen2_vl_vision.cpp) and a Qwen2 text decoder with M-RoPE
// (rope_parameters.mrope_section) on one backend. Images enter as rows replacing the
// "<|image_pad|>" embeddings, videos (the video processor's pixel_values_videos through the same
// tower) as rows replacing "<|video_pad|>"; their M-RoPE positions come from qwen2_vl_rope_index
// (transformers' get_rope_index) and go to the decoder in InputEmbeddings::positions.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <utility>

#include "af/core/error.hpp"
#include "af/modalities/qwen2_vl_video_processor.hpp"
#include "af/models/multimodal.hpp"
#include "af/models/qwen2_vl.hpp"
#include "models/decoder_lm.hpp"
#include "models/qwen2_vl_vision.hpp"
#include "models/registry.hpp"
#include "models/text_backed_lm.hpp"

namespace af::models {
namespace {

constexpr char kComponent[] = "qwen2_vl";

class Qwen2VLLM final : public TextBackedLM {
 public:
  Qwen2VLLM(std::shared_ptr<const io::ModelFiles> files, std::unique_ptr<CausalLM> text,
            std::unique_ptr<Qwen2VLVisionEncoder> vision, int32_t image_token, int32_t video_token,
            double tokens_per_second, std::string architecture)
      : TextBackedLM(std::move(files), std::move(text), std::move(architecture)),
        vision_(std::move(vision)),
        image_token_(image_token),
        video_token_(video_token),
        tokens_per_second_(tokens_per_second) {
    for (const auto& [id, key] :
         {std::pair{image_token_, "image_token_id"}, std::pair{video_token_, "video_token_id"}}) {
      AF_CHECK(id >= 0 && id < text_->config().vocab_size, ErrorCode::kFormat, kComponent,
               files_->path, ": ", key, " ", id, " is outside the text model's vocabulary of ",
               text_->config().vocab_size);
    }
    AF_CHECK(vision_->output_hidden() == text_->config().hidden_size, ErrorCode::kFormat,
             kComponent, files_->path, ": the merger makes rows of ", vision_->output_hidden(),
             " floats but the text model's hidden_size is ", text_->config().hidden_size);
  }

  int32_t image_token_id() const override { return image_token_; }
  ImageEncoder& image_encoder() override { return *vision_; }
  using MultimodalLM::mrope_positions;  // the images-only form
  std::vector<int32_t> mrope_positions(std::span<const int32_t> ids,
                                       std::span<const modalities::Image> images,
                                       std::span<const VideoFeatures> videos) const override {
    std::vector<int64_t> grids, video_grids;
    for (const modalities::Image& image : images) {
      const std::vector<int64_t> g = vision_->image_grid(image);
      grids.insert(grids.end(), g.begin(), g.end());
    }
    std::vector<float> intervals;  // Qwen2-VL: none (1)
    for (const VideoFeatures& v : videos) {
      AF_CHECK(v.features.grid_thw.size() == 3, ErrorCode::kInvalidArgument, kComponent,
               "a video's features carry no video_grid_thw (not made by encode_video)");
      video_grids.insert(video_grids.end(), v.features.grid_thw.begin(), v.features.grid_thw.end());
      if (tokens_per_second_ > 0)
        intervals.push_back(qwen2_5_vl_time_interval(tokens_per_second_, v.second_per_grid_t));
    }
    return qwen2_vl_rope_index(ids, image_token_, video_token_, grids, video_grids,
                               vision_->merge_size(), intervals);
  }
  int32_t video_token_id() const override { return video_token_; }
  modalities::VideoSampling video_sampling() const override {
    return video_processor().default_sampling();
  }
  int64_t num_video_tokens(const modalities::Video& video) const override {
    const modalities::Qwen2VLVideoProcessorConfig c = video_processor().config();
    const int64_t frames = int64_t(video.frames().size());
    const auto [height, width] =
        c.do_resize ? modalities::video_smart_resize(video.height(), video.width(),
                                                     c.patch_size * c.merge_size,
                                                     double(c.min_pixels), double(c.max_pixels))
                    : std::pair{video.height(), video.width()};
    const int64_t grid_t = (frames + c.temporal_patch_size - 1) / c.temporal_patch_size;
    return grid_t * (height / c.patch_size) * (width / c.patch_size) /
           (c.merge_size * c.merge_size);
  }
  VideoFeatures encode_video(const modalities::Video& video) override {
    const modalities::VideoPixelValues pv = video_processor().preprocess(video);
    VideoFeatures out;
    out.features = vision_->encode_patches(pv.data, pv.grid_thw);
    out.features.grid_thw.assign(pv.grid_thw.begin(), pv.grid_thw.end());
    out.second_per_grid_t = pv.second_per_grid_t;
    return out;
  }

 private:
  // The video processor beside config.json: video_preprocessor_config.json, else
  // preprocessor_config.json (what Qwen2VLVideoProcessor::load reads), else transformers 5's
  // processor_config.json "video_processor". Read per video: a bad video config never stops
  // images, and a few hundred bytes of json cost nothing beside decoding a video.
  modalities::Qwen2VLVideoProcessor video_processor() const {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path dir = fs::is_directory(files_->path, ec) ? fs::path(files_->path)
                                                            : fs::path(files_->path).parent_path();
    const fs::path combined = dir / "processor_config.json";
    const bool own = fs::exists(dir / "video_preprocessor_config.json", ec) ||
                     fs::exists(dir / "preprocessor_config.json", ec);
    modalities::Qwen2VLVideoProcessor proc =
        own || !fs::exists(combined, ec) ? modalities::Qwen2VLVideoProcessor::load(dir.string())
                                         : combined_video_processor(combined.string());
    AF_CHECK(proc.config().merge_size == vision_->merge_size(), ErrorCode::kFormat, kComponent,
             dir.string(), ": the video processor's merge_size ", proc.config().merge_size,
             " differs from the vision tower's spatial_merge_size ", vision_->merge_size());
    return proc;
  }

  static modalities::Qwen2VLVideoProcessor combined_video_processor(const std::string& path) {
    const nlohmann::json j = io::read_json_file(path);
    AF_CHECK(j.is_object() && j.contains("video_processor") && j["video_processor"].is_object(),
             ErrorCode::kFormat, kComponent, path, ": no \"video_processor\" object");
    return modalities::Qwen2VLVideoProcessor::from_json(j["video_processor"].dump(),
                                                        path + " video_processor");
  }

  std::unique_ptr<Qwen2VLVisionEncoder> vision_;
  int32_t image_token_, video_token_;
  double tokens_per_second_;  // Qwen2.5-VL's vision_config.tokens_per_second; 0 for Qwen2-VL
};

// The text model's config: transformers 5's text_config (ids it lacks taken from the top), or
// the flat config.json of hub checkpoints (text keys at the top level beside vision_config).
io::HfConfig text_config(const io::HfConfig& config) {
  if (!config.has("text_config")) return config;
  AF_CHECK(config.json().at("text_config").is_object(), ErrorCode::kFormat, kComponent,
           config.origin(), ": field \"text_config\" must be an object");
  nlohmann::json text = config.json().at("text_config");
  for (const char* key : {"bos_token_id", "eos_token_id", "pad_token_id"}) {
    if ((!text.contains(key) || text[key].is_null()) && config.has(key))
      text[key] = config.json().at(key);
  }
  text["architectures"] = {config.architecture()};
  return io::HfConfig(std::move(text), config.origin() + " (text_config)");
}

// Hub checkpoints and transformers 5.25's save_pretrained: model.* + lm_head.*; transformers'
// module tree: model.language_model.* + lm_head.*.
DecoderRoot decoder_root(const io::WeightSource& w) {
  if (w.has("model.language_model.embed_tokens.weight")) return {"model.language_model", "lm_head"};
  return {"model", "lm_head"};
}

int32_t token_id(const io::HfConfig& config, const char* key, int64_t fallback) {
  const int64_t id = config.get_int(key, fallback);
  AF_CHECK(id >= 0 && id <= INT32_MAX, ErrorCode::kFormat, kComponent, config.origin(), ": ", key,
           " must be a token id, got ", id);
  return static_cast<int32_t>(id);
}

// Qwen2.5-VL's vision_config.tokens_per_second (Qwen2_5_VLVisionConfig's default 4): how far
// apart in M-RoPE time a second of video is. 0 for Qwen2-VL, whose video positions step by 1.
double tokens_per_second(const io::HfConfig& config) {
  if (config.architecture() != "Qwen2_5_VLForConditionalGeneration") return 0;
  const nlohmann::json& root = config.json();
  if (!root.contains("vision_config") || !root["vision_config"].is_object()) return 4;
  const nlohmann::json& vision = root["vision_config"];
  if (!vision.contains("tokens_per_second") || vision["tokens_per_second"].is_null()) return 4;
  const nlohmann::json& v = vision["tokens_per_second"];
  AF_CHECK(v.is_number() && v.get<double>() > 0 && v.get<double>() <= 1e6, ErrorCode::kFormat,
           kComponent, config.origin(),
           ": field \"vision_config.tokens_per_second\" must be a number in (0, 1e6]");
  return v.get<double>();
}

// One run of same-kind ids: [begin, end) of kind 0 (text), 1 (image) or 2 (video).
struct Run {
  int kind;
  size_t begin, end;
};

}  // namespace

std::vector<int32_t> qwen2_vl_rope_index(std::span<const int32_t> ids, int32_t image_token,
                                         int32_t video_token,
                                         std::span<const int64_t> image_grid_thw,
                                         std::span<const int64_t> video_grid_thw, int64_t merge,
                                         std::span<const float> video_intervals) {
  AF_CHECK(merge > 0 && image_grid_thw.size() % 3 == 0 && video_grid_thw.size() % 3 == 0,
           ErrorCode::kInvalidArgument, kComponent, "rope index: grids must hold 3 values each");
  const size_t n = ids.size();
  std::vector<int32_t> pos(3 * n);
  // itertools.groupby over the modality of each id, as get_rope_index groups them.
  std::vector<Run> runs;
  for (size_t i = 0; i < n; ++i) {
    const int kind = ids[i] == image_token ? 1 : ids[i] == video_token ? 2 : 0;
    if (runs.empty() || runs.back().kind != kind) runs.push_back({kind, i, i});
    runs.back().end = i + 1;
  }
  size_t next_image = 0, next_video = 0;
  int64_t current = 0;
  for (const Run& run : runs) {
    if (run.kind == 0) {
      for (size_t i = run.begin; i < run.end; ++i)
        for (size_t c = 0; c < 3; ++c) pos[c * n + i] = int32_t(current + int64_t(i - run.begin));
      current += int64_t(run.end - run.begin);
      continue;
    }
    const bool video = run.kind == 2;
    std::span<const int64_t> grids = video ? video_grid_thw : image_grid_thw;
    size_t& next = video ? next_video : next_image;
    AF_CHECK(next * 3 < grids.size(), ErrorCode::kInvalidArgument, kComponent,
             "the prompt has more ", video ? "video" : "image", " placeholder runs than ",
             video ? "videos" : "images", " (", grids.size() / 3, ")");
    const int64_t t = grids[next * 3], h = grids[next * 3 + 1] / merge,
                  w = grids[next * 3 + 2] / merge;
    const float interval = video && next < video_intervals.size() ? video_intervals[next] : 1.0f;
    ++next;
    AF_CHECK(int64_t(run.end - run.begin) == t * h * w, ErrorCode::kInvalidArgument, kComponent,
             "a run of ", run.end - run.begin, " ", video ? "video" : "image",
             " placeholders does not match its grid (", t, " x ", h, " x ", w, " merged tokens)");
    // The last temporal position must fit the int32 positions (a hostile interval or grid).
    AF_CHECK(std::isfinite(interval) && interval >= 0 &&
                 double(t) * double(interval) + double(current) < double(INT32_MAX / 2),
             ErrorCode::kInvalidArgument, kComponent, "video ", next, ": M-RoPE time interval ",
             interval, " over ", t, " temporal patches is out of range");
    size_t i = run.begin;
    for (int64_t a = 0; a < t; ++a)
      for (int64_t b = 0; b < h; ++b)
        for (int64_t c = 0; c < w; ++c, ++i) {
          // float32 as torch's arange(t) * interval, then .long()'s truncation.
          pos[i] = int32_t(int64_t(float(a) * interval) + current);
          pos[n + i] = int32_t(b + current);
          pos[2 * n + i] = int32_t(c + current);
        }
    current += std::max(h, w);
  }
  return pos;
}

float qwen2_5_vl_time_interval(double tokens_per_second, double second_per_grid_t) {
  return float(tokens_per_second) * float(second_per_grid_t);
}

std::unique_ptr<CausalLM> make_qwen2_vl(io::ModelFiles files, const io::HfConfig& config,
                                        const LoadOptions& options) {
  AF_CHECK(files.format != "gguf", ErrorCode::kUnsupported, kComponent, files.path,
           ": Qwen2-VL loads from an HF folder (config.json + safetensors), not GGUF (yet)");
  auto shared = std::make_shared<const io::ModelFiles>(std::move(files));
  LoadOptions parts = options;
  if (!parts.backend)
    parts.backend = make_backend({options.device, options.num_threads, options.isa});
  const io::HfConfig text = text_config(config);
  std::unique_ptr<CausalLM> decoder = make_decoder_lm(shared, text, qwen2_decoder_spec(text), parts,
                                                      decoder_root(*shared->weights));
  auto vision = load_qwen2_vl_vision(*shared, config, parts.backend, parts);
  return std::make_unique<Qwen2VLLM>(
      shared, std::move(decoder), std::move(vision), token_id(config, "image_token_id", 151655),
      token_id(config, "video_token_id", 151656), tokens_per_second(config), config.architecture());
}

namespace {
constexpr std::string_view kClasses[] = {"Qwen2VLForConditionalGeneration",
                                         "Qwen2_5_VLForConditionalGeneration"};
}  // namespace

// HF folders only (no GGUF form yet).
constinit const ArchitectureInfo kQwen2VlArchitecture{kClasses, make_qwen2_vl};

}  // namespace af::models
